"""The examples run as documented and report what they claim."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_mnist_outliers_streaming_example(mnist_dir):
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "mnist_outliers.py"), "--digit", "1", "--memory-size", "800"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "learned from 6068 digits, kept 800" in proc.stdout  # bounded by memory_size
    assert len(re.findall(r"^digits ", proc.stdout, re.MULTILINE)) == 10  # scored as a stream of batches
    auc = float(re.search(r"ROC-AUC ([\d.]+)", proc.stdout).group(1))
    fpr = float(re.search(r"at false positive rate ([\d.]+)", proc.stdout).group(1))
    assert auc > 99.0 and fpr < 3.0
