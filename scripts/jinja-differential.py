#!/usr/bin/env python3
"""Differential check of vlmc's Jinja against Python Jinja2 (a developer tool, not part of `make test`).

Renders every template of ../shared/data/templates/chat_templates.json with random conversations, once with
Python Jinja2 set up as transformers' apply_chat_template and once through `vlmc template --jsonl`, and reports
any difference (errors compare by kind only).

usage: scripts/jinja-differential.py [--seed N] [--per-template N] [--vlmc build/vlmc] [--shared ../shared]
needs: pip install jinja2
"""
import argparse
import datetime
import json
import random
import subprocess

from jinja2 import nodes
from jinja2.exceptions import TemplateError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = "2025-07-10 12:00:00"


class Generation(Extension):
    """transformers' AssistantTracker, reduced to what rendering needs: the body renders unchanged."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def make_env():
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.strptime(NOW, "%Y-%m-%d %H:%M:%S").strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, Generation])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


TEXTS = ["Hello", "  spaced  ", "multi\nline\n", "é ü 日本", "", "quote ' and \"", "{{ not jinja }}", "<|im_start|>"]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}]


def content(rng):
    r = rng.random()
    if r < 0.6:
        return rng.choice(TEXTS)
    if r < 0.9:
        return [rng.choice([{"type": "text", "text": rng.choice(TEXTS)}, {"type": "image"}]) for _ in range(rng.randint(1, 3))]
    return None


def conversation(rng):
    msgs = []
    if rng.random() < 0.4:
        msgs.append({"role": "system", "content": content(rng)})
    for _ in range(rng.randint(1, 4)):
        msgs.append({"role": "user", "content": content(rng)})
        if rng.random() < 0.8:
            m = {"role": "assistant", "content": content(rng)}
            msgs.append(m)
            if rng.random() < 0.25:
                m["tool_calls"] = [{"type": "function", "id": "call_1", "function": {
                    "name": "get_weather", "arguments": rng.choice([{"city": "Paris"}, '{"city": "Paris"}'])}}]
                msgs.append({"role": "tool", "content": rng.choice(["22C", '{"t": 22}']), "tool_call_id": "call_1",
                             "name": "get_weather"})
    if rng.random() < 0.3:
        msgs.pop()
    ctx = {"messages": msgs, "add_generation_prompt": rng.random() < 0.5, "bos_token": "<s>", "eos_token": "</s>",
           "extra_context": {}}
    extra = ctx["extra_context"]
    if rng.random() < 0.3:
        extra["tools"] = TOOLS * rng.randint(1, 2)
    if rng.random() < 0.2:
        ctx["bos_token"] = None
    if rng.random() < 0.2:
        extra["enable_thinking"] = rng.random() < 0.5
    if rng.random() < 0.2:
        extra["documents"] = [{"title": "Doc", "text": "Body text"}]
    return ctx


def python_render(tmpl, ctx):
    kw = {"messages": ctx["messages"], "tools": None, "documents": None,
          "add_generation_prompt": ctx["add_generation_prompt"]}
    for k in ("bos_token", "eos_token"):
        if ctx.get(k) is not None:
            kw[k] = ctx[k]
    kw.update(ctx["extra_context"])
    try:
        return "ok", tmpl.render(**kw)
    except Exception as ex:  # any failure counts as an error
        return "err", f"{type(ex).__name__}: {ex}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-template", type=int, default=30)
    ap.add_argument("--vlmc", default="build/vlmc")
    ap.add_argument("--shared", default="../shared")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    env = make_env()
    data = json.load(open(f"{args.shared}/data/templates/chat_templates.json"))
    bad = total = 0
    for name, entry in data.items():
        tmpl = env.from_string(entry["template"])
        ctxs = [conversation(rng) for _ in range(args.per_template)]
        lines = "".join(json.dumps(dict(c, vlmc_now=NOW)) + "\n" for c in ctxs)
        with open("/tmp/vlmc-jinja-differential.jinja", "w") as f:
            f.write(entry["template"])
        r = subprocess.run([args.vlmc, "template", "--template-file", "/tmp/vlmc-jinja-differential.jinja", "--jsonl"],
                           input=lines, capture_output=True, text=True)
        outs = [json.loads(line) for line in r.stdout.splitlines()]
        for ctx, out in zip(ctxs, outs):
            total += 1
            want = python_render(tmpl, ctx)
            got = ("ok", out["text"]) if "text" in out else ("err", out["error"])
            if not (want[0] == got[0] == "err" or want == got):
                bad += 1
                print(f"DIFF {name}: {json.dumps(ctx)[:300]}\n   python: {want!r:.300}\n   vlmc:   {got!r:.300}")
    print(f"{bad} differences in {total} renders")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
