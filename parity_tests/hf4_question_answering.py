"""transformers 4.57's question-answering pipeline, run in its own venv (transformers 5 removed it).

Run by parity_tests/test_tasks.py as `.venv-hf4/bin/python THIS_FILE` with a clean
environment: it imports nothing from kobert. Reads one JSON object on stdin
({"model", "tokenizer", "jobs": [{"rows": [[question, context], ...], "options": {...}}, ...]})
and prints {"transformers": version, "answers": [[answer per row] per job]}.
"""

import json
import sys


def main() -> None:
    import transformers
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    request = json.load(sys.stdin)
    tokenizer = AutoTokenizer.from_pretrained(request["tokenizer"])
    model = AutoModelForQuestionAnswering.from_pretrained(request["model"], attn_implementation="eager")
    answer = pipeline("question-answering", model=model, tokenizer=tokenizer, device="cpu")
    answers = [[answer(question=q, context=c, **job["options"]) for q, c in job["rows"]] for job in request["jobs"]]
    json.dump({"transformers": transformers.__version__, "answers": answers}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
