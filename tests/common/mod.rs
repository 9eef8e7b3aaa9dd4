//! What the end-to-end tests share beyond the control plane's own test
//! support: the tenants' job definition pointed at a sandbox.

use std::path::Path;

use control_plane::reconciler::JobTemplate;
use xero_sandbox::Sandbox;

/// The `tenant-job` binary built beside the tests, talking to `sandbox` with
/// its minute limit off (the job may go as fast as it can).
pub fn job_template(sandbox: &Sandbox) -> JobTemplate {
    let mut jobs = JobTemplate::beside_current_exe();
    assert!(
        Path::new(&jobs.image).is_file(),
        "the tenant-job binary must be built beside the tests (cargo test --workspace builds it): {}",
        jobs.image
    );
    jobs.xero_endpoint = Some(sandbox.base_url().to_owned());
    jobs.xero_per_minute = Some(100_000);
    jobs.timeout_seconds = 600;
    jobs
}
