"""Compares two `ghm detect` JSON outputs: same detections in the same order, boxes within
1e-2 px and scores within 1e-4. Used by .ci/run to check the NativeAOT binary against the JIT build.
With --ranks: per image, the same number of detections and the score at each rank within 1e-4
(for nearly untrained weights, whose scores tie near the prior and so may come in another order).
Usage: python3 tools/ci/compare_detections.py [--ranks] expected.json actual.json"""
import json
import sys


def by_image(detections):
    images = {}
    for d in detections:
        images.setdefault(d["image"], []).append(d["score"])
    return {image: sorted(scores, reverse=True) for image, scores in images.items()}


def compare_ranks(expected_path, actual_path):
    expected = by_image(json.load(open(expected_path)))
    actual = by_image(json.load(open(actual_path)))
    if sorted(expected) != sorted(actual):
        print(f"compare: images {sorted(expected)} in {expected_path}, {sorted(actual)} in {actual_path}")
        return 1
    for image in expected:
        e, a = expected[image], actual[image]
        if len(e) != len(a) or any(abs(x - y) > 1e-4 for x, y in zip(e, a)):
            print(f"compare: {image}: scores by rank differ:\n  expected {e}\n  actual   {a}")
            return 1
    print(f"compare: {sum(len(s) for s in expected.values())} detection scores agree rank by rank")
    return 0


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
    if sys.argv[1] == "--ranks":
        sys.exit(compare_ranks(sys.argv[2], sys.argv[3]))
    sys.exit(main(sys.argv[1], sys.argv[2]))
