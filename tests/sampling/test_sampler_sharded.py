import os
import subprocess
import sys


def test_sharded_greedy_equals_single_device():
    case = os.path.join(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers"), "sharded_sampler_case.py")
    proc = subprocess.run([sys.executable, case], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
