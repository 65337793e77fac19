//! What `ragprobe calibrate --save` writes and a suite's `judge: {calibration: FILE}` reads:
//! per judged rule, how the judge's verdicts met people's labels on the same runs. The
//! reports correct each judged rule's pass rate for the judge's errors from these counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a judge's verdicts met people's on labelled runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confusion {
    pub judge_pass_human_pass: u32,
    pub judge_pass_human_fail: u32,
    pub judge_fail_human_pass: u32,
    pub judge_fail_human_fail: u32,
}

impl Confusion {
    /// `[[judge pass & human pass, judge pass & human fail], [judge fail & human pass,
    /// judge fail & human fail]]`.
    pub fn matrix(&self) -> [[u32; 2]; 2] {
        [
            [self.judge_pass_human_pass, self.judge_pass_human_fail],
            [self.judge_fail_human_pass, self.judge_fail_human_fail],
        ]
    }

    pub fn from_matrix(m: [[u32; 2]; 2]) -> Confusion {
        Confusion {
            judge_pass_human_pass: m[0][0],
            judge_pass_human_fail: m[0][1],
            judge_fail_human_pass: m[1][0],
            judge_fail_human_fail: m[1][1],
        }
    }
}

/// A judge's calibration: the labels file it came from, and the counts per judged rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    #[serde(default)]
    pub labels: String,
    pub rules: BTreeMap<String, Confusion>,
}
