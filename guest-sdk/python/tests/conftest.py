import pathlib
import sys

# The SDK and the Python BTS example, importable without installing either.
ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "guest-sdk" / "python"))
sys.path.insert(0, str(ROOT / "examples" / "bts-analytics-py"))
