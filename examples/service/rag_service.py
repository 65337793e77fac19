#!/usr/bin/env python3
"""A small RAG service, to show (and test) ragprobe's `http` and `command` chain adapters.

It answers questions about the Databricks corpus by keyword overlap and replies with the
answer, the documents it retrieved and the spans it recorded, joined to the caller's trace
through the W3C `traceparent` it was given. Standard library only.

    python3 examples/service/rag_service.py --port 8090      # HTTP: POST /ask
    echo '{"question": "..."}' | python3 examples/service/rag_service.py --stdio

It also answers in the shapes LangChain services use, without spans (as a service that is
not instrumented): LangServe's `POST /support/invoke` with `{"input": question}` ->
`{"output": {"answer", "context": [Document]}}`, and a RetrievalQA app's `POST /qa` with
`{"query": question}` -> `{"query", "result", "source_documents": [Document]}`, where a
Document is `{"page_content", "metadata": {"source", ...}, "type": "Document"}` (its id is
`metadata.source`, as LangChain loaders set it; no score).

`--filter-docs databricks` keeps only documents whose `docs` metadata matches (the fix).
"""

import argparse
import json
import os
import random
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "suites", "databricks", "corpus.jsonl")
STOP = {"a", "an", "the", "how", "much", "does", "it", "to", "do", "is", "of", "what", "run"}


def words(text):
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP}


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def span_id(rng):
    return "%016x" % rng.getrandbits(64)


def answer(request, documents, filter_docs):
    question = request.get("question", "")
    seed = int(request.get("seed", 0))
    rng = random.Random(seed)
    trace_id, parent = "", None
    parts = str(request.get("traceparent", "")).split("-")
    if len(parts) == 4:
        trace_id, parent = parts[1], parts[2]
    spans = []

    started = time.time_ns()
    pool = [d for d in documents if not filter_docs or d["metadata"].get("docs") == filter_docs]
    q = words(question)
    scored = sorted(pool, key=lambda d: (-len(q & words(d["text"])), d["id"]))[:2]
    retrieved = [dict(d, score=len(q & words(d["text"]))) for d in scored]
    spans.append({
        "span_id": span_id(rng), "parent_span_id": parent, "name": "keyword-search",
        "kind": "RETRIEVER", "start_ns": started, "end_ns": time.time_ns(),
        "attributes": {"k": 2, "document_ids": [d["id"] for d in retrieved]},
    })

    started = time.time_ns()
    sentences = [s for d in retrieved for s in re.split(r"(?<=[.!?])\s+", d["text"]) if s]
    relevant = [s for s in sentences if q & words(s)] or ["I don't know."]
    text = rng.choice(relevant)
    spans.append({
        "span_id": span_id(rng), "parent_span_id": parent, "name": "compose",
        "kind": "LLM", "start_ns": started, "end_ns": time.time_ns(),
        "attributes": {"model": "keyword-composer", "seed": seed},
    })
    return {"answer": text, "documents": retrieved, "spans": spans, "trace_id": trace_id}


def as_document(doc):
    """A LangChain Document as LangServe serializes it: the id in metadata.source."""
    return {"page_content": doc["text"], "metadata": dict(doc["metadata"], source=doc["id"]),
            "type": "Document", "id": None}


def langchain_reply(path, request, documents, filter_docs):
    """LangServe's and RetrievalQA's reply shapes, or None for another path."""
    if path == "/support/invoke":
        question = request.get("input", "")
    elif path == "/qa":
        question = request.get("query", "")
    else:
        return None
    if not isinstance(question, str):
        question = json.dumps(question)
    reply = answer({"question": question, "seed": 0}, documents, filter_docs)
    docs = [as_document(d) for d in reply["documents"]]
    if path == "/qa":
        return {"query": question, "result": reply["answer"], "source_documents": docs}
    return {"output": {"answer": reply["answer"], "context": docs},
            "metadata": {"run_id": "%032x" % random.getrandbits(128)}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdio", action="store_true", help="answer one JSON request on stdin")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--filter-docs", default=None)
    parser.add_argument("--corpus", default=CORPUS)
    args = parser.parse_args()
    documents = load(args.corpus)

    if args.stdio:
        json.dump(answer(json.load(sys.stdin), documents, args.filter_docs), sys.stdout)
        return

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self):
            length = int(self.headers.get("content-length", 0))
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except ValueError as err:
                return self.reply(400, {"error": "bad request", "message": str(err)})
            shaped = langchain_reply(self.path, request, documents, args.filter_docs)
            if shaped is not None:
                return self.reply(200, shaped)
            if self.path != "/ask":
                return self.reply(404, {"error": "not found", "message": self.path})
            request.setdefault("traceparent", self.headers.get("traceparent", ""))
            self.reply(200, answer(request, documents, args.filter_docs))

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("listening on http://127.0.0.1:%d/ask" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
