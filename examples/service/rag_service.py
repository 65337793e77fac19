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
A request may also carry its own `"filter": {"docs": "databricks"}` (metadata equality), and
`"documents": [{"id", "text", "metadata"}]` to answer from those instead of retrieving (the
context override ragprobe's triage uses).

`--otlp URL` exports the spans over OTLP/HTTP JSON to URL (e.g. ragprobe's receiver at
http://127.0.0.1:4318/v1/traces) instead of returning them in the reply, with OpenInference
attributes: a CHAIN span for the request whose parent is the caller's `traceparent`, and under
it the RETRIEVER span (`retrieval.documents.N.document.*`) and the LLM span.
`--otlp-delay-ms N` exports N ms after replying (as a batching exporter would), and
`--otlp-new-trace` starts a trace of its own instead of continuing `traceparent` (a service
that does not propagate context).
"""

import argparse
import json
import threading
import urllib.request
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
    wanted = dict(request.get("filter") or {})
    if filter_docs:
        wanted["docs"] = filter_docs
    q = words(question)
    given = request.get("documents")
    if isinstance(given, list):
        retrieved = [dict(d, score=None) for d in given]
    else:
        pool = [d for d in documents
                if all(d["metadata"].get(k) == v for k, v in wanted.items())]
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


def otlp_value(value):
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [otlp_value(v) for v in value]}}
    return {"stringValue": value if isinstance(value, str) else json.dumps(value)}


def otlp_spans(reply, question, traceparent, new_trace):
    """The reply's spans as OpenInference-style OTLP/JSON spans under one CHAIN span."""
    parts = str(traceparent).split("-")
    trace_id, parent = (parts[1], parts[2]) if len(parts) == 4 and not new_trace else (
        "%032x" % random.getrandbits(128), "")
    top = "%016x" % random.getrandbits(64)
    spans = []
    for span in reply["spans"]:
        attributes = {"openinference.span.kind": span["kind"]}
        if span["kind"] == "RETRIEVER":
            attributes["input.value"] = question
            for i, doc in enumerate(reply["documents"]):
                prefix = "retrieval.documents.%d.document." % i
                attributes[prefix + "id"] = doc["id"]
                attributes[prefix + "content"] = doc["text"]
                attributes[prefix + "metadata"] = json.dumps(doc["metadata"])
                if doc.get("score") is not None:
                    attributes[prefix + "score"] = float(doc["score"])
        else:
            attributes["llm.model_name"] = span["attributes"]["model"]
            attributes["output.value"] = reply["answer"]
        spans.append({"traceId": trace_id, "spanId": span["span_id"], "parentSpanId": top,
                      "name": span["name"], "kind": 1,
                      "startTimeUnixNano": str(span["start_ns"]),
                      "endTimeUnixNano": str(span["end_ns"]),
                      "attributes": [{"key": k, "value": otlp_value(v)}
                                     for k, v in attributes.items()]})
    spans.append({"traceId": trace_id, "spanId": top, "parentSpanId": parent, "name": "support-service",
                  "kind": 2, "startTimeUnixNano": str(min(s["start_ns"] for s in reply["spans"])),
                  "endTimeUnixNano": str(time.time_ns()),
                  "attributes": [{"key": "openinference.span.kind", "value": otlp_value("CHAIN")},
                                 {"key": "input.value", "value": otlp_value(question)}]})
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": otlp_value("rag-service")}]},
        "scopeSpans": [{"scope": {"name": "rag_service"}, "spans": spans}]}]}


def export(url, payload, delay_ms):
    def send():
        if delay_ms:
            time.sleep(delay_ms / 1000)
        body = json.dumps(payload).encode()
        req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10).read()
        except OSError as err:
            print("otlp export failed: %s" % err, file=sys.stderr, flush=True)
    if delay_ms:
        threading.Thread(target=send, daemon=True).start()
    else:
        send()


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
    parser.add_argument("--otlp", default=None, help="export spans over OTLP/JSON to this URL")
    parser.add_argument("--otlp-delay-ms", type=int, default=0)
    parser.add_argument("--otlp-new-trace", action="store_true")
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
            reply = answer(request, documents, args.filter_docs)
            if args.otlp:
                payload = otlp_spans(reply, request.get("question", ""), request["traceparent"],
                                     args.otlp_new_trace)
                del reply["spans"]
                if not args.otlp_delay_ms:
                    export(args.otlp, payload, 0)
                self.reply(200, reply)
                if args.otlp_delay_ms:
                    export(args.otlp, payload, args.otlp_delay_ms)
                return
            self.reply(200, reply)

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
