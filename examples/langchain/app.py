#!/usr/bin/env python3
"""The Databricks support bot as a real LangChain service: an LCEL retrieval chain over
langchain-core's InMemoryVectorStore (k=2, a deterministic embedding defined here), a
`ChatOpenAI` model (point OPENAI_BASE_URL at ragprobe's `openai-loopback` to run offline),
served with LangServe and traced with OpenInference's LangChain instrumentor.

    .venv/bin/python examples/langchain/app.py --port 8091
    # POST /support/invoke {"input": "How much does it cost to run a database?"}
    #   -> {"output": {"answer": ..., "context": [Document, ...], "question": ...}, ...}

Per request (LangServe's `config.configurable`):
  seed       the model's sampling seed (ragprobe sends the run's seed)
  filter     metadata equality filter for the retriever, e.g. {"docs": "databricks"} (the fix)
  documents  answer from these documents instead of retrieving (triage's context edits)

With OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set (e.g. ragprobe's receiver,
http://127.0.0.1:4318/v1/traces), every chain step is exported as an OpenInference span,
each request's spans continuing the caller's W3C `traceparent`, so they join the caller's
trace. A SimpleSpanProcessor exports each span as it ends: the spans are there before the
reply.
"""

import argparse
import hashlib
import json
import math
import os
import re
import socket
import sys
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "suites", "databricks", "corpus.jsonl")

PROMPT = """You are a support assistant for Databricks.
Answer the question using only the context below, in at most three sentences.
If the context does not contain the answer, say that you do not know.

Context:
{context}

Question: {question}
Answer:"""

STOP = {"a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "how", "in",
        "is", "it", "much", "of", "on", "or", "so", "such", "the", "to", "what", "when",
        "with", "you"}


def tracing():
    """OpenInference spans over OTLP/protobuf when an endpoint is configured; returns the
    propagation hooks (extract, attach, detach) or None."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not endpoint and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    if not endpoint:
        return None
    from openinference.instrumentation.langchain import LangChainInstrumentor
    from opentelemetry import context, propagate
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "langchain-support"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    LangChainInstrumentor().instrument(tracer_provider=provider)
    return propagate.extract, context.attach, context.detach


def words(text):
    """Lower-case words without stop words, with plurals and -ing/-ed folded, so
    "databases", "stored" and "running" meet "database", "store" and "run"."""
    out = []
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in STOP:
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
        if len(word) > 3 and word[-1] == word[-2]:
            word = word[:-1]
        out.append(word.rstrip("e") or word)
    return out


def build_chain(model_url, model_name):
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import ConfigurableField, RunnableLambda, RunnableParallel
    from langchain_core.runnables import RunnablePassthrough
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_openai import ChatOpenAI

    with open(CORPUS, encoding="utf-8") as f:
        corpus = [json.loads(line) for line in f if line.strip()]

    class HashingEmbeddings(Embeddings):
        """Deterministic: hashed words weighted by IDF over the corpus, L2-normalised (the
        same idea as ragprobe's hashing embedder). No model, no network."""

        def __init__(self, texts, dims=1024):
            self.dims = dims
            n = len(texts)
            df = {}
            for text in texts:
                for word in set(words(text)):
                    df[word] = df.get(word, 0) + 1
            self.idf = {w: math.log(1 + (n - d + 0.5) / (d + 0.5)) for w, d in df.items()}
            self.unseen = math.log(1 + (n + 0.5) / 0.5)

        def _embed(self, text):
            vector = [0.0] * self.dims
            for word in words(text):
                slot = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
                vector[slot % self.dims] += self.idf.get(word, self.unseen)
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            return [v / norm for v in vector]

        def embed_documents(self, texts):
            return [self._embed(t) for t in texts]

        def embed_query(self, text):
            return self._embed(text)

    store = InMemoryVectorStore(HashingEmbeddings([d["text"] for d in corpus]))
    store.add_documents(
        [Document(id=d["id"], page_content=d["text"], metadata=d["metadata"]) for d in corpus],
        ids=[d["id"] for d in corpus],
    )

    class SupportRetriever(BaseRetriever):
        """The k most similar documents, optionally only those whose metadata matches
        `filter`; or exactly `documents` when given."""

        k: int = 2
        filter: Optional[dict] = None
        documents: Optional[list] = None

        def _get_relevant_documents(self, query, *, run_manager):
            if self.documents is not None:
                return [Document(id=str(d.get("id")),
                                 page_content=d.get("page_content") or d.get("text") or "",
                                 metadata=d.get("metadata") or {}) for d in self.documents]
            wanted = self.filter or {}

            def keep(doc):
                return all(doc.metadata.get(key) == value for key, value in wanted.items())

            return store.similarity_search(query, k=self.k, filter=keep if wanted else None)

    retriever = SupportRetriever().configurable_fields(
        filter=ConfigurableField(id="filter", name="Retriever filter",
                                 description="Metadata equality, e.g. {\"docs\": \"databricks\"}"),
        documents=ConfigurableField(id="documents", name="Context override",
                                    description="Answer from these documents instead"),
    )
    model = ChatOpenAI(base_url=model_url, api_key=os.environ.get("OPENAI_API_KEY", "unused"),
                       model=model_name, temperature=1.0, max_tokens=200, max_retries=2,
                       timeout=30).configurable_fields(
        seed=ConfigurableField(id="seed", name="Seed", description="Sampling seed"))

    def context_lines(docs):
        return "\n".join(f"[{d.id}] {d.page_content}" for d in docs)

    answer = (
        {"context": RunnableLambda(lambda x: context_lines(x["context"])),
         "question": RunnableLambda(lambda x: x["question"])}
        | ChatPromptTemplate.from_template(PROMPT)
        | model
        | StrOutputParser()
    )
    chain = (RunnableParallel(context=retriever, question=RunnablePassthrough())
             .assign(answer=answer)
             .with_types(input_type=str, output_type=dict)
             .with_config(run_name="support-bot"))
    return chain, retriever


def loopback_socket(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--check", action="store_true",
                        help="print the retriever's top 2 for the reference questions and exit")
    args = parser.parse_args()
    # LangServe prints a banner on stdout at startup; stdout carries only the one line a
    # caller waits for.
    announce, sys.stdout = sys.stdout, sys.stderr
    model_url = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    hooks = tracing()
    chain, retriever = build_chain(model_url, os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
    if args.check:
        for question in ["How much does it cost to run a database?",
                         "How does Databricks store databases?"]:
            for wanted in (None, {"docs": "databricks"}):
                config = {"configurable": {"filter": wanted}} if wanted else {}
                docs = retriever.invoke(question, config)
                print(question, wanted, [d.id for d in docs], file=announce)
        return

    import uvicorn
    from fastapi import FastAPI
    from langserve import add_routes

    app = FastAPI(title="Databricks support bot")

    if hooks:
        extract, attach, detach = hooks

        @app.middleware("http")
        async def continue_traceparent(request, call_next):
            # The caller's `traceparent` becomes the parent of this request's spans.
            token = attach(extract(dict(request.headers)))
            try:
                return await call_next(request)
            finally:
                detach(token)

    @app.get("/health")
    def health():
        return {"status": "ok"}

    add_routes(app, chain, path="/support")
    sock = loopback_socket(args.port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

    async def serve():
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", file=announce,
                  flush=True)
        await task

    import asyncio
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
