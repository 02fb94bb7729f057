"""scripts/demo (README's first command), run with bootstrap and build
skipped (the suite's build is used): it exits 0 and prints the GPUs, the
inventory before and after `published`, and the Cyborg shim's objects."""

import os
import pathlib
import re
import subprocess
import sys

from gwdaemon import ROOT, build_dir

GPUS = ["0000:1a:00.0", "0000:67:00.0", "0000:68:00.0"]
TRAITS = {"0000:1a:00.0": "OWNER_CYBORG,CUSTOM_NVIDIA_2230,CUSTOM_NUMA_NODE_0",
          "0000:67:00.0": "OWNER_CYBORG,CUSTOM_NVIDIA_2230,CUSTOM_GPU_CLIQUE_0,CUSTOM_NUMA_NODE_0",
          "0000:68:00.0": "OWNER_CYBORG,CUSTOM_NVIDIA_2230,CUSTOM_GPU_CLIQUE_0,CUSTOM_NUMA_NODE_0"}


def test_demo_runs_and_shows_inventory_and_shim_objects():
    env = dict(os.environ, GW_DEMO_SKIP_BOOTSTRAP="1", GW_BUILD_DIR=str(build_dir()),
               GW_DEMO_PYTHON=sys.executable)
    env.pop("GPUWARDEN_ENDPOINT", None)
    r = subprocess.run([str(ROOT / "scripts" / "demo")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    titles = re.findall(r"^== (.*)$", out, re.M)
    assert [t.split("  ")[0].split(" (")[0] for t in titles] == [
        "gpuwarden discover --host-root tests/fixtures/hosts/x299-3xa6000",
        "starting gpuwardend on x299-3xa6000",
        "gpuwarden list", "gpuwarden inventory",
        "the Cyborg shim: the DriverDevice objects its discover() returns to Cyborg's agent",
        "published: there is no Placement in this demo, so we confirm the generation as the shim does after "
        "Placement took it",
        "gpuwarden list", "gpuwarden inventory", "stopping gpuwardend"]

    def body(i):
        return out.split("\n== ")[i + 1].split("\n", 1)[1]

    assert "clique 0: 0000:67:00.0 0000:68:00.0" in body(0)
    assert body(1).startswith("gpuwardend is up (pid ")

    def rows(text, first):
        lines = text.strip("\n").split("\n")
        return [re.split(r"  +", l) for l in lines[first:]]

    assert [r[:4] for r in rows(body(2), 1)] == [[g, "sanitized", "no", "no"] for g in GPUS]
    # The daemon's first content of this run (revision 1); no driver has
    # confirmed any yet.
    gen1 = re.match(r"generation (\d+), host compute-1, model per_gpu: 3 deployables; "
                    r"revision 1, published revision 0\n", body(3)).group(1)
    assert rows(body(3), 2) == [[f"compute-1_{g}", "PGPU", g, "1", "1", "0", TRAITS[g]] for g in GPUS]

    shim = body(4)
    assert shim.startswith(f"inventory generation {gen1}: 3 DriverDevice objects\n")
    assert re.findall(r"^DriverDevice\[\d\] vendor=10de type=GPU model='GA102GL \[RTX A6000\]' stub=False$",
                      shim, re.M) == [f"DriverDevice[{i}] vendor=10de type=GPU model='GA102GL [RTX A6000]' "
                                      "stub=False" for i in range(3)]
    assert re.findall(r"^  DriverDeployable (\S+) num_accelerators=1 driver_name=NVIDIA$", shim, re.M) == [
        f"compute-1_{g}" for g in GPUS]
    assert shim.count("    (no attach handle: nothing allocatable)") == 3
    assert "    DriverAttribute trait2 = CUSTOM_GPU_CLIQUE_0" in shim

    m = re.match(r"op published, generation (\d+): the daemon promoted (.*) to allocatable; "
                 r"its inventory is now generation (\d+)\n", body(5))
    assert m and m.group(1) == gen1 and m.group(2) == ", ".join(GPUS) and m.group(3) != gen1
    assert [r[:4] for r in rows(body(6), 1)] == [[g, "allocatable", "no", "no"] for g in GPUS]
    assert re.match(rf"generation {m.group(3)}, host compute-1, model per_gpu: 3 deployables; "
                    r"revision 2, published revision 1\n", body(7)), body(7)
    assert rows(body(7), 2) == [[f"compute-1_{g}", "PGPU", g, "1", "0", "1", TRAITS[g]] for g in GPUS]
    assert body(8).rstrip("\n").endswith("gpuwardend stopped cleanly. Next: docs/cli.md (the CLI), "
                                         "docs/cyborg.md (the shim), scripts/test.")
    run = re.search(r"state and sockets in (/tmp/gpuwarden-demo\.\w+)", out).group(1)
    assert not pathlib.Path(run).exists()
