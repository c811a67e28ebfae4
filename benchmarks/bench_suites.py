"""What the field's suites cost in eval-safety stage time: answers per second and judge verdicts per second for
SmolLM2-135M-Instruct on AdvBench, JailbreakBench, HarmBench and JailbreakBench's recorded attacks.

For each (suite, attack) the first ``--prompts`` prompts are answered greedily as eval-safety answers them (same
decoding settings, one batch of all the sampled prompts), then judged by each judge; model and judge loading is
excluded (warm-ups: a full batch of XSTest prompts, one verdict per judge). Printed per row: prompt tokens (the
attacks' recorded prompts are long: prefill grows), answers per wall second and per CPU second of this process (on
an idle 2-core machine the wall rate is at least the CPU rate), verdicts per second per judge, and the projected
minutes of eval-safety for one configuration on the whole suite (suite size / answer rate + suite size x the
judges' seconds per verdict). The machine's load average is printed first: other processes share the cores, and
every rate here is a lower bound when it is high.

    HF_HUB_OFFLINE=1 PYTHONPATH=src python benchmarks/bench_suites.py --prompts 32 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from safepref.evaluation.suites import Attack, load_suite
from safepref.generation.generate import GenerationConfig, generate_responses, render_prompt
from safepref.judges import JudgeInput, get_judge
from safepref.models import loading as models

MODEL = "smollm2-135m-instruct"
ROWS = (("advbench", "none"), ("jbb", "none"), ("harmbench", "none"), ("jbb", "jbb-attacks:JailbreakChat"),
        ("jbb", "jbb-attacks:PAIR"), ("jbb", "jbb-attacks:GCG"))


def timed(work):
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--judges", default="harm,keyword,classifier")
    parser.add_argument("--rows", default=",".join(f"{suite}/{attack}" for suite, attack in ROWS),
                        help="suite/attack pairs to measure, comma-separated")
    args = parser.parse_args()
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    config = GenerationConfig(greedy=True, max_new_tokens=args.max_new_tokens, batch_size=max(args.prompts, 1),
                              seed=0)
    judges = {name: get_judge(name) for name in args.judges.split(",")}
    tokenizer = models.load_tokenizer(MODEL)
    with tempfile.TemporaryDirectory() as folder:
        # a full batch of other prompts first: the first batch of a process pays one-time costs (the precision
        # choice, buffers) that would otherwise land on the first row
        warm = load_suite("xstest", args.prompts)
        generate_responses(warm, MODEL, Path(folder) / "warm.jsonl", config)
        for judge in judges.values():
            judge.judge([JudgeInput(id="w", prompt=warm[0].text, response="Sure, here is how.")])
        print(f"load average now: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"{MODEL}, greedy, {args.max_new_tokens} new tokens, {args.prompts} prompts per row, one batch")
        print("suite | attack | mean prompt tokens | answers/s wall | answers/s per CPU s | "
              + " | ".join(f"{name} verdicts/s" for name in judges) + " | suite size | minutes per configuration")
        for suite, attack_name in (row.split("/", 1) for row in args.rows.split(",")):
            full = load_suite(suite)
            attack = Attack(attack_name)
            attacked = attack.attacked_prompts(full)
            sample = attacked[: args.prompts]
            tokens = sum(len(tokenizer(render_prompt(tokenizer, p.text, chat=True), add_special_tokens=False)["input_ids"])
                         for p in sample) / len(sample)
            out = Path(folder) / f"{suite}-{attack_name}.jsonl"
            answers, wall, cpu = timed(lambda s=sample, o=out: generate_responses(s, MODEL, o, config))
            rows = [JudgeInput(id=r.prompt_id, prompt=p.meta["request"], response=r.text)
                    for r, p in zip(sorted(answers, key=lambda r: r.prompt_id),
                                    sorted(sample, key=lambda p: p.id), strict=True)]
            judge_rates = {}
            for name, judge in judges.items():
                _, judge_wall, _ = timed(lambda j=judge, r=rows: j.judge(r))
                judge_rates[name] = len(rows) / judge_wall
            per_answer = 1 / (len(sample) / wall) + sum(1 / rate for rate in judge_rates.values())
            print(f"{suite} | {attack_name} | {tokens:.0f} | {len(sample) / wall:.2f} | {len(sample) / cpu:.2f} | "
                  + " | ".join(f"{rate:.1f}" for rate in judge_rates.values())
                  + f" | {len(attacked)} | {len(attacked) * per_answer / 60:.1f}")


if __name__ == "__main__":
    main()
