//! `ragprobe index`: loads a corpus into a Chroma collection (ids, texts, metadata, and
//! embeddings from the chain's own embedder, so queries and documents share one space).

use std::path::Path;
use std::time::Instant;

use crate::chain::Chain;
use crate::chain::chroma::unstorable_metadata;
use crate::chain::pipeline::Retriever;
use crate::cli::IndexArgs;
use crate::error::AppError;
use crate::exit_codes;
use crate::suite::build::load_chain;

pub fn index(args: IndexArgs) -> Result<i32, AppError> {
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::io("starting the runtime"))?;
    let started = Instant::now();
    let dims = runtime.block_on(async {
        if args.recreate {
            // A collection that is not there yet is what --recreate wants anyway.
            let _ = chroma.client.delete_collection(&chroma.collection).await;
        }
        let id = chroma
            .client
            .create_collection(&chroma.collection)
            .await
            .map_err(|e| AppError::Unreachable(e.message))?;
        let mut dims = 0;
        for batch in corpus.documents.chunks(args.batch.max(1)) {
            let texts: Vec<String> = batch.iter().map(|d| d.text.clone()).collect();
            let vectors = chroma
                .embedder
                .embed(&texts)
                .await
                .map_err(|e| AppError::Unreachable(e.message))?;
            dims = vectors.first().map_or(dims, Vec::len);
            chroma
                .client
                .upsert(&id, batch, vectors)
                .await
                .map_err(|e| AppError::Unreachable(e.message))?;
        }
        Ok::<usize, AppError>(dims)
    })?;
    println!(
        "indexed {} documents from {} into collection `{}` at {} ({}, {dims} dims) in {:.1} s",
        corpus.documents.len(),
        corpus.path.display(),
        chroma.collection,
        chroma.client.url,
        chroma.embedder.describe(),
        started.elapsed().as_secs_f64()
    );
    Ok(exit_codes::OK)
}

type ChainAndCorpus = (
    std::sync::Arc<Chain>,
    Option<std::sync::Arc<crate::chain::corpus::Corpus>>,
);

/// The chain of a suite file, or a chain file itself.
fn chain_and_corpus(path: &Path) -> Result<ChainAndCorpus, AppError> {
    if crate::suite::load::looks_like_suite(path) {
        let suite = crate::suite::load(path)?;
        Ok((suite.chain, suite.corpus))
    } else {
        let loaded = load_chain(path)?;
        Ok((std::sync::Arc::new(loaded.chain), loaded.corpus))
    }
}
