"""Run seeds x configs x methods as Ray tasks and gather one table and one plot.

    python scripts/sweep.py configs/sweep_walker.yaml [--address ADDR] [--resume] [--out DIR]

Starts a local Ray (the config's num_cpus) unless --address names a running cluster
("auto" finds the local one). Each task writes <out>/<config>/<method>/seed<k>/; the sweep
writes results.md, results.csv, results.json and curves.png under <out>. --resume skips
finished tasks (their summary.json exists) and continues the others from their last
checkpoint where the method keeps one (train methods).
"""
import argparse
import sys

from diffsuite.envs.learn import sweep


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--address", help="a running Ray cluster's address (default: start a local Ray)")
    p.add_argument("--resume", action="store_true", help="skip finished tasks, continue interrupted ones")
    p.add_argument("--out")
    a = p.parse_args()
    s = sweep.sweep(a.config, a.out, a.address, a.resume)
    print(s["markdown"])
    for r in s["rows"]:
        if r["status"] == "failed":
            print(f"FAILED {r['config']} {r['method']} seed {r['seed']}: {r['error']}")
    print(f"outputs in {s['out']}/ (results.md, results.csv, results.json, curves.png)")
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
