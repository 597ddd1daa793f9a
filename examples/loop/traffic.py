#!/usr/bin/python3
"""Sends a recordings file's questions to coe serve's OpenAI front door, as an application would.

Each distinct id of --data becomes one chat request, "[id:ID] ..." (the replay upstream
answers by that id), sent by --users threads on kept-alive connections. Prints what the
served cascade did: requests, failures, accuracy against the file's `label` column,
mean dollars per request, and exits per tier (one JSON object with --json). A 502
whose every model answered but said nothing readable is counted as unanswered (the
models abstained); anything else not 200 is a failure. Standard library only. Exit 1
when a request failed.

  traffic.py --url http://127.0.0.1:8080 --model served --data REC.csv [--users 8] [--limit N] [--json]
"""
import argparse
import csv
import http.client
import json
import sys
import threading
import urllib.parse


def questions(path, limit):
    seen, out = set(), []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["id"] in seen:
                continue
            seen.add(row["id"])
            out.append((row["id"], row.get("label", "")))
    return out[:limit] if limit else out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.users < 1:
        ap.error("--users must be at least 1")
    target = urllib.parse.urlparse(a.url)
    work = questions(a.data, a.limit)
    results = [None] * len(work)
    next_index = [0]
    lock = threading.Lock()

    def user():
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(work):
                break
            qid, _ = work[i]
            body = json.dumps({"model": a.model,
                               "messages": [{"role": "user", "content": f"[id:{qid}] Which option is right?"}]})
            try:
                conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                results[i] = (r.status, json.loads(data) if data else {})
            except (OSError, http.client.HTTPException, ValueError) as e:
                results[i] = (0, {"error": {"message": str(e)}})
                conn.close()
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        conn.close()

    threads = [threading.Thread(target=user) for _ in range(a.users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    failed, unanswered, right, labelled, cost, exits = [], 0, 0, 0, 0.0, {}
    for (qid, label), (status, reply) in zip(work, results):
        message = reply.get("error", {}).get("message", "") if status != 200 else ""
        if status == 502 and "no answer could be read" in message:
            unanswered += 1
            labelled += bool(label)  # a wrong answer for accuracy
            continue
        if status != 200:
            failed.append(f"{qid}: HTTP {status}: {reply.get('error', {}).get('message', '')}")
            continue
        facts = reply["coe"]
        cost += facts["cost_usd"]
        exits[facts["exit_tier"]] = exits.get(facts["exit_tier"], 0) + 1
        if label:
            labelled += 1
            right += facts["answer"] == label
    answered = len(work) - len(failed) - unanswered
    summary = {"requests": len(work), "failed": len(failed), "unanswered": unanswered,
               "accuracy": right / labelled if labelled else None,
               "usd_per_request": cost / answered if answered else None,
               "exits": {str(k): v for k, v in sorted(exits.items())}}
    if a.json:
        print(json.dumps(summary))
    else:
        acc = f"{100 * summary['accuracy']:.2f}%" if labelled else "n/a"
        per = f"${summary['usd_per_request']:.6f}" if answered else "n/a"
        tiers = ", ".join(f"tier {k}: {v}" for k, v in summary["exits"].items())
        print(f"{len(work)} requests, {len(failed)} failed, {unanswered} unanswered (the models abstained); "
              f"accuracy {acc}; {per} a request; exits {tiers}")
    for f in failed[:5]:
        print("failed:", f, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
