//! The group a sharded build's MLflow runs share (`--group`, `RAGPROBE_GROUP`): by default
//! the commit, with the CI's pipeline id when there is one, so a later build of the same
//! commit never mixes its shards in.

/// Where CI systems put the commit under test, then the pipeline's id.
const COMMITS: [&str; 4] = [
    "GITHUB_SHA",
    "CI_COMMIT_SHA",
    "BUILDKITE_COMMIT",
    "CIRCLE_SHA1",
];
const PIPELINES: [&str; 4] = [
    "GITHUB_RUN_ID",
    "CI_PIPELINE_ID",
    "BUILDKITE_BUILD_ID",
    "CIRCLE_WORKFLOW_ID",
];

/// The default group: `<commit, 12 characters>` and `-<pipeline id>` when the CI gives
/// one; `git_commit` (the suite's checkout) when no CI says which commit. `None` without
/// any commit.
pub fn default_group(
    get: impl Fn(&str) -> Option<String>,
    git_commit: Option<String>,
) -> Option<String> {
    let present = |name: &&str| get(name).filter(|v| !v.trim().is_empty());
    let commit = COMMITS.iter().find_map(&present).or(git_commit)?;
    let short: String = commit.trim().chars().take(12).collect();
    Some(match PIPELINES.iter().find_map(present) {
        Some(pipeline) => format!("{short}-{}", pipeline.trim()),
        None => short,
    })
}

/// A group name as a tag value and a search-filter literal: printable ASCII, no quotes.
pub fn check(group: &str) -> Result<(), String> {
    if group.is_empty() || group.len() > 250 {
        return Err("--group: give 1 to 250 characters".into());
    }
    if let Some(c) = group
        .chars()
        .find(|c| !c.is_ascii_graphic() || "'\"`\\".contains(*c))
    {
        return Err(format!(
            "--group {group:?}: {c:?} cannot be in a group name (letters, digits and punctuation other than quotes and backslashes)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_group_is_the_commit_and_the_pipeline() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        const SHA: &str = "0123456789abcdef0123";
        assert_eq!(
            default_group(env(&[("GITHUB_SHA", SHA), ("GITHUB_RUN_ID", "77")]), None).as_deref(),
            Some("0123456789ab-77")
        );
        assert_eq!(
            default_group(
                env(&[("CI_COMMIT_SHA", SHA), ("CI_PIPELINE_ID", "9")]),
                None
            )
            .as_deref(),
            Some("0123456789ab-9")
        );
        assert_eq!(
            default_group(env(&[]), Some(SHA.to_owned())).as_deref(),
            Some("0123456789ab")
        );
        assert_eq!(default_group(env(&[("GITHUB_RUN_ID", "77")]), None), None);
        assert!(check("abc-1.2_x").is_ok());
        assert!(check("a'b").is_err() && check("").is_err() && check("a b").is_err());
    }
}
