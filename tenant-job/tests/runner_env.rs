//! The local jobs runner and the job agree on the job's environment: every
//! variable the runner sets or passes on is one the job reads (the allow-list
//! of `job_contract::env`), but `PATH`, which any process needs, and the
//! local warehouse's limits, which the local adapter reads when the job
//! opens it.

use job_contract::env;

#[test]
fn what_the_local_runner_sets_is_in_the_jobs_allow_list() {
    for name in cloud_local::RUNNER_ENV {
        assert!(
            env::NAMES.contains(&name),
            "the local runner sets {name}, which the job's allow-list lacks"
        );
    }
    for name in cloud_local::INHERITED_ENV {
        assert!(
            name == "PATH"
                || name == cloud_local::MEMORY_ENV
                || name == cloud_local::THREADS_ENV
                || env::NAMES.contains(&name),
            "the local runner passes on {name}, which the job's allow-list lacks"
        );
    }
    // The secret the runner may set is one the allow-list knows as secret.
    assert!(env::SECRET_NAMES.contains(&cloud_local::MASTER_KEY_ENV));
}
