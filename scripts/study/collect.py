"""Collects the study's runs into docs/study/results.json (scripts/make_study.sh, phase `assemble`).

    python3 scripts/study/collect.py OUT RESULTS BASES BASE_STEPS STEPS SIZES TASKS METHODS SEEDS JOBS VIRTUAL_TOKENS CHECK_BASE BASE_LR CHECK_METHODS BASE_LR_WIDTH

Reads what the commands wrote in OUT/runs (`minipeft eval --json`, log.jsonl, *.cmd, *.time),
OUT/lrs.json (the LRs the sweep chose, {base: {method: LR}}) and OUT/data/meta.json (the design). Every row of `runs`
is one evaluation: a model (a base, a tuned model, or a base with an adapter on or off) on one
test file. scripts/study/page.py makes docs/study.md from this file alone.
"""
import glob
import json
import os
import re
import struct
import sys

out, results = sys.argv[1], sys.argv[2]
bases = [b.split(":") for b in sys.argv[3].split()]
base_steps, steps = int(sys.argv[4]), int(sys.argv[5])
sizes = [int(x) for x in sys.argv[6].split()]
tasks, methods, seeds, jobs = sys.argv[7].split(), sys.argv[8].split(), [int(x) for x in sys.argv[9].split()], int(sys.argv[10])
virtual_tokens = int(sys.argv[11])
check = [b.split(":") for b in sys.argv[12].split()]  # the no-preamble base, or none (make_study.sh, phase `check`)
base_lr, check_methods, base_lr_width = float(sys.argv[13]), sys.argv[14].split(), int(sys.argv[15])  # LR at that width, times it / width
runs_dir = f"{out}/runs"
meta = json.load(open(f"{out}/data/meta.json"))
kind_of = meta["tasks"]
lrs = json.load(open(f"{out}/lrs.json")) if os.path.exists(f"{out}/lrs.json") else {}
missing = []


def ev(name):  # an `eval --json` result, or None (and the name noted as missing)
    try:
        return json.loads(open(f"{runs_dir}/{name}.txt").read())
    except (OSError, ValueError):
        missing.append(name)
        return None


def secs(name):
    try:
        return float(open(f"{runs_dir}/{name}.time").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cmd(name):
    try:
        return open(f"{runs_dir}/{name}.cmd").read().strip()
    except OSError:
        return None


def tensors(folder):  # {name: element count} from the folder's safetensors headers
    counts = {}
    for f in glob.glob(f"{folder}/*.safetensors"):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        for k, v in header.items():
            if k == "__metadata__":
                continue
            c = 1
            for d in v["shape"]:
                c *= d
            counts[k] = c
    return counts


def disk(folder):
    return sum(os.path.getsize(f) for f in glob.glob(f"{folder}/*") if os.path.isfile(f))


def last_val_loss(run):
    try:
        v = [json.loads(l).get("val_loss") for l in open(f"{runs_dir}/{run}/log.jsonl")]
    except OSError:
        return None
    v = [x for x in v if x is not None]
    return v[-1] if v else None


def row(name, **fields):  # one evaluation row, or None when its eval is missing
    r = ev(name)
    if r is None:
        return None
    return dict(fields, exact_match=r["exact_match"], test_loss=r["loss"], examples=r["examples"], command=cmd(name))


def describe(name, layers, width):  # a base's size, training time and held-out losses
    folder = f"{runs_dir}/base-{name}/final"
    t = tensors(folder)
    embed = sum(c for k, c in t.items() if k.endswith(("wte.weight", "wpe.weight")))
    log = f"{runs_dir}/base-{name}/log.jsonl"
    command = cmd(f"base-{name}")
    lr = re.search(r"--lr (\S+)", command or "")
    return {"layers": int(layers), "width": int(width), "heads": 4, "params": sum(t.values()), "embedding_params": embed,
            "bytes": disk(folder), "train_seconds": secs(f"base-{name}"), "command": command, "lr": float(lr[1]) if lr else None,
            "val_loss": [json.loads(l) for l in open(log) if "val_loss" in l] if os.path.exists(log) else []}


rows, base_info = [], {}
for name, layers, width in bases + check:
    base_info[name] = describe(name, layers, width)
    common = dict(base=name, base_params=base_info[name]["params"], method="none", pairs=0, steps=0, seed=0, adapter="none")
    for skill in meta["skills"] + ["skills"]:  # each skill, then all of them (the forgetting test)
        rows.append(row(f"base-{name}.{skill}", task=skill, task_kind="base", **common))
    for task in tasks:
        rows.append(row(f"base-{name}.{task}", task=task, task_kind=kind_of[task], **common))

for name, _, _ in bases + check:
    params = base_info[name]["params"]
    for task in tasks:
        for n in sizes:
            for seed in seeds:
                for m in methods:
                    run = f"{name}-{task}-{m}-{n}-s{seed}"
                    if not os.path.exists(f"{runs_dir}/{run}.cmd"):
                        continue
                    common = dict(base=name, base_params=params, method=m, pairs=n, steps=steps, seed=seed,
                                  lr=lrs.get(name, {}).get(m), seconds=secs(run), saved_params=sum(tensors(f"{runs_dir}/{run}/final").values()),
                                  saved_bytes=disk(f"{runs_dir}/{run}/final"))
                    on = "none" if m == "full" else "on"
                    rows.append(row(f"{run}.task", task=task, task_kind=kind_of[task], adapter=on, **common))
                    if os.path.exists(f"{runs_dir}/{run}.skills.cmd"):
                        rows.append(row(f"{run}.skills", task="skills", task_kind="base", adapter=on, adapted_to=task, **common))
                        if m == "lora":
                            rows.append(row(f"{run}.skills-off", task="skills", task_kind="base", adapter="off", adapted_to=task, **common))
                        elif m != "full":  # virtual tokens only: off, the model is the base file, scored once
                            r = row(f"base-{name}.skills", task="skills", task_kind="base", adapter="off", adapted_to=task,
                                    note="off = the unchanged base file (scored once per base)", **common)
                            rows.append(r)

sweep = []
for f in sorted(glob.glob(f"{runs_dir}/sweep-*.task.txt")):
    run = os.path.basename(f)[:-len(".task.txt")]
    base, task, m, n, lr = re.fullmatch(r"sweep-([^-]+)-([^-]+)-(.+)-(\d+)-s0-lr(.+)", run).groups()
    r = row(f"{run}.task", base=base, base_params=base_info.get(base, {}).get("params"), task=task, task_kind=kind_of[task],
            method=m, pairs=int(n), steps=steps, seed=0, adapter="none" if m == "full" else "on", lr=lr)
    if r:
        r["val_loss"] = last_val_loss(run)
        sweep.append(r)

# Serving: the three LoRA adapters of the largest base in one mixed batch.
serving = {}
try:
    got = [json.loads(l) for l in open(f"{runs_dir}/serve-mixed.txt") if l.strip()]
    refs = [json.loads(l) for l in open(f"{out}/data/mixed_test.jsonl")]
    per = {}
    for g, ref in zip(got, refs):
        text = g["completion"].split("<|endoftext|>")[0]
        ok = text == ref["completion"] and ("<|endoftext|>" in g["completion"] or len(text.split()) == len(ref["completion"].split()))
        c = per.setdefault(ref["adapter"], [0, 0])
        c[0] += ok
        c[1] += 1
    err = open(f"{runs_dir}/serve-mixed.err").read()
    serving = {"command": cmd("serve-mixed"), "rows": len(got), "per_adapter": {a: {"exact": c[0], "examples": c[1]} for a, c in per.items()},
               "throughput": [l for l in err.splitlines() if l.startswith("mixed batch of")], "eval": ev("serve-mixed-eval"),
               "eval_command": cmd("serve-mixed-eval")}
except OSError:
    missing.append("serve-mixed")

started = int(open(f"{out}/started").read())
finished = int(open(f"{out}/finished").read()) if os.path.exists(f"{out}/finished") else None
load = [tuple(map(float, l.split())) for l in open(f"{out}/load.txt")] if os.path.exists(f"{out}/load.txt") else []
load = [(t, l) for t, l in load if started <= t <= (finished or t)]  # while the runs ran
times = [secs(os.path.basename(f)[:-5]) for f in glob.glob(f"{runs_dir}/*.time")]
flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""


def cpu_field(key):  # the first processor's /proc/cpuinfo line KEY
    return next((l.split(":", 1)[1].strip() for l in flags.splitlines() if l.split(":", 1)[0].strip() == key), None)


timing = {"started": started, "finished": finished, "wall_seconds": None if finished is None else finished - started,
          "command_seconds": sum(t for t in times if t), "commands": len(times), "jobs": jobs, "cores": os.cpu_count(),
          "simd": "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2",
          "cpu": {"model_name": cpu_field("model name"), "family": cpu_field("cpu family"), "model": cpu_field("model")},
          "load_average": {"samples": len(load), "mean": sum(l for _, l in load) / len(load) if load else None,
                           "max": max((l for _, l in load), default=None)}}
check_base = [dict(base_info.pop(name), name=name, methods=check_methods) for name, _, _ in check]
design = dict(meta, bases=base_info, check_base=check_base[0] if check_base else None, base_steps=base_steps, base_lr=base_lr, base_lr_width=base_lr_width, steps=steps,
              sizes=sizes, task_names=tasks, methods=methods, seeds=seeds, lrs=lrs, virtual_tokens=virtual_tokens)
json.dump({"design": design, "runs": [r for r in rows if r], "sweep": sweep, "serving": serving, "timing": timing,
           "missing": sorted(set(missing))}, open(results, "w"), indent=1)
print(f"wrote {results}: {sum(1 for r in rows if r)} runs, {len(sweep)} sweep runs, {len(set(missing))} missing")
