"""The soak's short form (tests/bench/soak.py; the long one is scripts/soak):
16 clients mixing every op for 15 s with clean-ups running and SIGHUPs, so the
soak's own code cannot rot and the daemon under mixed load answers every
request with a success or a promised refusal, and exits 0."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_short_soak_has_no_error_outside_the_promised_refusals():
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "bench" / "soak.py"),
                        "--seconds", "15", "--clients", "16", "--hup-every", "2",
                        # RSS is the long run's business: 15 s is mostly warm-up
                        "--max-growth-kb", "65536"],
                       capture_output=True, text=True, timeout=180, env=os.environ)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "errors outside the expected refusals: 0" in r.stdout, r.stdout
    # every kind of op really ran
    for op in ("gate", "published", "attached", "released", "maintenance", "audit", "admin-op-on-read"):
        assert f"{op} " in r.stdout, (op, r.stdout)
