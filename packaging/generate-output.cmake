# cmake -DCMD=PROGRAM -DARGS="ARG..." -DOUT=FILE -P generate-output.cmake
# Runs PROGRAM ARG... and keeps its stdout as FILE, only when it succeeds:
# the manual pages and the bash completion are printed by the binaries
# themselves, from the option tables their parsers use (CMakeLists.txt).
separate_arguments(args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND ${CMD} ${args} OUTPUT_FILE ${OUT}.tmp RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE ${OUT}.tmp)
  message(FATAL_ERROR "${CMD} ${ARGS}: exit ${rc}")
endif()
file(RENAME ${OUT}.tmp ${OUT})
