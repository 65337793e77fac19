//! `ragprobe index`: loads a corpus into a Chroma collection (ids, texts, metadata, and
//! embeddings from the chain's own embedder, so queries and documents share one space).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::chain::Chain;
use crate::chain::build::load_chain;
use crate::chain::chroma::unstorable_metadata;
use crate::chain::corpus::Corpus;
use crate::chain::pipeline::Retriever;
use crate::cli::IndexArgs;
use crate::commands::common::runtime;
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::out;
use crate::suite::discover::looks_like_suite;

pub fn index(args: IndexArgs) -> Result<Outcome, AppError> {
    let (chain, corpus) = chain_and_corpus(&args.path)?;
    let Chain::Pipeline(pipeline) = chain.as_ref() else {
        return Err(AppError::Usage(format!(
            "{}: only a pipeline chain with a chroma retriever can be indexed",
            args.path.display()
        )));
    };
    let Retriever::Chroma(chroma) = &pipeline.retriever else {
        return Err(AppError::Usage(format!(
            "{}: the retriever is not `kind: chroma`; nothing to index",
            args.path.display()
        )));
    };
    let Some(corpus) = corpus else {
        return Err(AppError::Usage(format!(
            "{}: the chroma retriever names no `corpus` to index",
            args.path.display()
        )));
    };
    if let Some(problem) = unstorable_metadata(&corpus.documents) {
        return Err(AppError::Usage(format!(
            "{}: {problem}",
            corpus.path.display()
        )));
    }
    let started = Instant::now();
    let dims = runtime()?.block_on(chroma.index(&corpus, args.batch, args.recreate))?;
    out::println(&format!(
        "indexed {} documents from {} into collection `{}` at {} ({}, {dims} dims) in {:.1} s",
        corpus.documents.len(),
        corpus.path.display(),
        chroma.collection,
        chroma.client.url,
        chroma.embedder.describe(),
        started.elapsed().as_secs_f64()
    ));
    Ok(Outcome::Ok)
}

/// The chain of a suite file, or a chain file itself.
fn chain_and_corpus(path: &Path) -> Result<(Arc<Chain>, Option<Arc<Corpus>>), AppError> {
    if looks_like_suite(path) {
        let suite = crate::suite::load(path)?;
        Ok((suite.chain, suite.corpus))
    } else {
        let loaded = load_chain(path)?;
        Ok((Arc::new(loaded.chain), loaded.corpus))
    }
}
