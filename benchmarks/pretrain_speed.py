"""Pretraining tokens/s for each choice of the backbone recipe, on this machine.

    python benchmarks/pretrain_speed.py --shards runs/shards [--layers 6 --hidden 256] [--steps 6]

Rows (each a fresh model + AdamW, the same real batches from `kobert shards` output, dropout 0):
MLM fp32, MLM bf16 autocast, MLM bf16 + torch.compile, ELECTRA (generator ½ width) bf16.
Each step is `kobert.training.pretrain.train_step`, the training loop's own (vocabulary head at
masked positions only, batch drawing and masking included).
Tokens/s = batch x seq_len x timed steps / seconds, after 2 untimed warm-up steps. The
printed table (with the CPU line) goes into kobert/assets/backbone/CARD.md.
"""

from __future__ import annotations

import argparse
import time


def measure(shards: str, objective: str, precision: str, compile_: bool, layers: int, hidden: int,
            batch: int, seq_len: int, steps: int) -> float:
    import torch

    from kobert.training import pretrain as P
    from kobert.training.corpus import load_shards

    cfg = P.PretrainConfig(shards=shards, out="/tmp/unused", preset="small", batch_size=batch, seq_len=seq_len,
                           model={"num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": hidden // 64,
                                  "intermediate_size": 4 * hidden},
                           objective=objective, precision=precision, dropout=0.0, compile=compile_)
    data = load_shards(shards)
    packed = P.PackedSequences(data, seq_len)
    vocab = int(data.meta["vocab_size"])
    torch.manual_seed(0)
    model = P.build_pretraining_model(cfg.model_config(vocab), cfg)
    optimizer = P.build_optimizer(model, cfg)
    ranks = P.Ranks(device=torch.device("cpu"))
    objective_fn = P.wrap_objective(cfg, model, ranks)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    mask_id = data.special_id("[MASK]")
    elapsed = 0.0
    for step in range(steps + 2):  # the training loop's own step: batch drawing and masking included
        t = time.perf_counter()
        P.train_step(cfg, step, packed, objective_fn, model, optimizer, ranks, autocast, mask_id, vocab)
        if step >= 2:
            elapsed += time.perf_counter() - t
    return batch * seq_len * steps / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", required=True)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rows", default="mlm-fp32,mlm-bf16,electra-bf16,mlm-bf16-compile")
    args = ap.parse_args()

    from kobert.bench import cpu_info, cpu_line

    print(cpu_line(cpu_info()))
    print(f"{args.layers} x {args.hidden} (FFN {4 * args.hidden}), batch {args.batch} x {args.seq_len}, "
          f"{args.steps} timed steps\n")
    print("| objective | precision | torch.compile | tokens/s | x MLM fp32 |\n|---|---|---|---|---|")
    base = None
    for row in args.rows.split(","):
        objective, precision, *rest = row.split("-")
        rate = measure(args.shards, objective, precision, bool(rest), args.layers, args.hidden, args.batch,
                       args.seq_len, args.steps)
        base = base or rate
        print(f"| {objective} | {precision} | {'yes' if rest else 'no'} | {rate:,.0f} | {rate / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
