//! The order of runs for a plan with adaptive cases (`runs: auto`): every open case gets
//! runs in turn, so slots freed by a decided case go to the cases still open; finished runs
//! are released to the reporters in each case's run order, and an adaptive case is closed
//! at the first run that decides it. Runs of a closed case still in flight when it closed
//! are dropped, never recorded: what a case records (and so its verdict) depends on the
//! seed alone, not on the concurrency or on which run finished first.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::model::record::RunRecord;
use crate::plan::{CaseJob, Job, Plan};
use crate::sequential::{CaseTests, Stop};
use crate::suite::adaptive::{Against, replayed, signal};

pub struct Schedule {
    state: Mutex<State>,
    plan_seed: u64,
}

struct State {
    cases: Vec<CaseState>,
    /// The case the next job is taken from (round robin).
    cursor: usize,
    /// Runs that finished after their case was decided, dropped.
    dropped: u32,
}

struct CaseState {
    job: Arc<CaseJob>,
    /// The run indices this plan (or shard) makes, ascending, not yet recorded.
    runs: RunIndices,
    issued: usize,
    adaptive: Option<Adaptive>,
}

struct Adaptive {
    tests: CaseTests,
    gated: Vec<String>,
    /// Index into `runs` of the next run to release.
    released: usize,
    /// Finished runs waiting for the ones before them.
    pending: BTreeMap<u32, RunRecord>,
}

/// A case's run indices: an adaptive case's are 0, 1, 2… up to its `max_runs`, held as
/// that bound (memory follows the runs made, not the runs allowed: `max_runs: 4294967295`
/// is a number, not a list); a fixed case's are listed.
enum RunIndices {
    UpTo(u32),
    Listed(Vec<u32>),
}

impl RunIndices {
    fn get(&self, at: usize) -> Option<u32> {
        match self {
            RunIndices::UpTo(end) => u32::try_from(at).ok().filter(|i| i < end),
            RunIndices::Listed(runs) => runs.get(at).copied(),
        }
    }
}

/// What the reporters get after a run finished.
#[derive(Default)]
pub struct Released {
    pub records: Vec<RunRecord>,
    /// A case that the released runs decided: (case id, runs it used, why it stopped).
    pub decided: Option<(String, u32, Stop)>,
}

impl Schedule {
    /// `done`: the runs already recorded; `recorded`: those of adaptive cases, whose
    /// tests they feed (a resumed plan carries on where its cases stood).
    pub fn new(plan: &Plan, done: &HashSet<(String, u32)>, recorded: &[RunRecord]) -> Schedule {
        let against = plan
            .baseline
            .as_ref()
            .map(|b| Against::new(&plan.suite, &b.summary));
        let cases = (0..plan.cases.len())
            .map(|ordinal| {
                let job = plan.case_job(ordinal);
                let spec = &plan.suite.spec.cases[plan.cases[ordinal]];
                let adaptive =
                    plan.adaptive
                        .filter(|_| plan.is_adaptive(ordinal))
                        .map(|settings| {
                            // An adaptive case holds every index from 0: its recorded runs
                            // are the first `tests.runs()` of `runs`.
                            let (tests, gated) =
                                replayed(&plan.suite, spec, settings, against.as_ref(), recorded);
                            Adaptive {
                                released: tests.runs() as usize,
                                tests,
                                gated,
                                pending: BTreeMap::new(),
                            }
                        });
                let (runs, issued) = match &adaptive {
                    Some(a) => (RunIndices::UpTo(plan.run_count(ordinal)), a.released),
                    None => (
                        RunIndices::Listed(
                            plan.runs_of(ordinal)
                                .filter(|run| !done.contains(&(job.id.clone(), *run)))
                                .collect(),
                        ),
                        0,
                    ),
                };
                CaseState {
                    job,
                    runs,
                    issued,
                    adaptive,
                }
            })
            .collect();
        Schedule {
            state: Mutex::new(State {
                cases,
                cursor: 0,
                dropped: 0,
            }),
            plan_seed: plan.seed,
        }
    }

    /// The next run to start, from the next case (in turn) that still needs one; `None`
    /// when every case has all the runs it can use started.
    pub fn next_job(&self) -> Option<Job> {
        let mut state = self.state.lock().ok()?;
        let count = state.cases.len();
        for step in 0..count {
            let at = (state.cursor + step) % count;
            let case = &mut state.cases[at];
            let open = case
                .adaptive
                .as_ref()
                .is_none_or(|a| !a.tests.stop().is_final());
            if open && let Some(run) = case.runs.get(case.issued) {
                case.issued += 1;
                let job = Job {
                    seed: crate::seed::run_seed(self.plan_seed, &case.job.id, run),
                    case: Arc::clone(&case.job),
                    run,
                };
                state.cursor = (at + 1) % count;
                return Some(job);
            }
        }
        None
    }

    /// Takes a finished run; returns the runs to record now, in order.
    pub fn accept(&self, record: RunRecord) -> Released {
        let Ok(mut state) = self.state.lock() else {
            return Released::default();
        };
        let Some(index) = state.cases.iter().position(|c| c.job.id == record.case) else {
            return Released {
                records: vec![record],
                decided: None,
            };
        };
        let case = &mut state.cases[index];
        let Some(adaptive) = case.adaptive.as_mut() else {
            return Released {
                records: vec![record],
                decided: None,
            };
        };
        if adaptive.tests.stop().is_final() {
            state.dropped += 1;
            return Released::default();
        }
        adaptive.pending.insert(record.run, record);
        let mut released = Released::default();
        while let Some(next) = case.runs.get(adaptive.released) {
            let Some(record) = adaptive.pending.remove(&next) else {
                break;
            };
            let stop = adaptive.tests.push(&signal(&record, &adaptive.gated));
            adaptive.released += 1;
            released.records.push(record);
            if stop.is_final() {
                released.decided = Some((case.job.id.clone(), adaptive.tests.runs(), stop));
                let late = adaptive.pending.len() as u32;
                adaptive.pending.clear();
                state.dropped += late;
                break;
            }
        }
        released
    }

    /// Runs that finished after their case was decided (they were in flight), dropped.
    pub fn dropped(&self) -> u32 {
        self.state.lock().map_or(0, |s| s.dropped)
    }
}
