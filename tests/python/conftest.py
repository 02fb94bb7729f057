"""Suite-wide reporting: the kernel lab's boots, and a loud count of lab
tests that did not run."""
import sys
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "lab"))


def pytest_terminal_summary(terminalreporter):
    import json
    import os
    import lab
    report = os.environ.get("GW_LAB_REPORT")
    if report and lab.Guest.BOOTS:
        with open(report, "w") as f:
            json.dump({"boots": lab.Guest.BOOTS, "stats": lab.STATS}, f, indent=1)
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if "KERNEL LAB NOT RUN" in str(r.longrepr)]
    if skipped:
        terminalreporter.write_sep("!", f"KERNEL LAB NOT RUN: {len(skipped)} lab tests skipped", red=True)
        terminalreporter.write_line(str(skipped[0].longrepr[-1]))
    if lab.Guest.BOOTS:
        total = sum(s for _, s in lab.Guest.BOOTS)
        terminalreporter.write_sep("-", "kernel lab")
        for name, secs in lab.Guest.BOOTS:
            terminalreporter.write_line(f"boot {name}: {secs:.1f} s to the command channel")
        terminalreporter.write_line(f"{len(lab.Guest.BOOTS)} boots, {total:.1f} s booting; "
                                    f"lab tests {lab.STATS.get('lab_seconds', 0):.1f} s in all; "
                                    f"initramfs {lab.STATS.get('initramfs_bytes', 0) / 1e6:.0f} MB built in "
                                    f"{lab.STATS.get('initramfs_seconds', 0):.1f} s")
