"""Compares two `ghm detect` JSON outputs: same detections in the same order, boxes within
1e-2 px and scores within 1e-4. Used by .ci/run to check the NativeAOT binary against the JIT build.
Usage: python3 tools/ci/compare_detections.py expected.json actual.json"""
import json
import sys


def main(expected_path, actual_path):
    expected = json.load(open(expected_path))
    actual = json.load(open(actual_path))
    if len(expected) != len(actual):
        print(f"compare: {len(expected)} detections in {expected_path}, {len(actual)} in {actual_path}")
        return 1
    for i, (e, a) in enumerate(zip(expected, actual)):
        same = (e["image"] == a["image"] and e["category_id"] == a["category_id"] and e["label"] == a["label"]
                and all(abs(x - y) <= 1e-2 for x, y in zip(e["bbox"], a["bbox"]))
                and abs(e["score"] - a["score"]) <= 1e-4)
        if not same:
            print(f"compare: detection {i} differs:\n  expected {e}\n  actual   {a}")
            return 1
    print(f"compare: {len(expected)} detections agree")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
