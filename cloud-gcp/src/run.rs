//! Cloud Run jobs: a tenant's `ingest-<id>` and `transform-<id>` from the
//! tenant-job image, running as the tenant's service account; executions
//! started with per-run overrides. Creating, updating and deleting a job are
//! long-running operations, waited out here.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cloud::error::{CloudError, CloudResult};
use cloud::naming::Labels;
use cloud::ports::{Execution, ExecutionOverrides, ExecutionState, Job, JobRunner, JobSpec};
use google_cloud_lro::Poller;
use google_cloud_run_v2::model as run;

use crate::limiter::QuotaClass;
use crate::{errors, CellAdapter};

const CONTAINER: &str = "tenant-job";

/// Whether the adapter owns a job variable: `LEDGERLAKE_CLOUD` and
/// `LEDGERLAKE_GCP_*` say where the job runs, and are written by the adapter
/// into every definition, never taken from a spec.
fn is_adapter_variable(name: &str) -> bool {
    name == "LEDGERLAKE_CLOUD" || name.starts_with("LEDGERLAKE_GCP_")
}

/// `env` as plain values and `secret_env` (variable → secret name) as
/// references to the newest version of secrets of `project`.
fn env_vars(
    env: &BTreeMap<String, String>,
    secret_env: &BTreeMap<String, String>,
    project: &str,
) -> Vec<run::EnvVar> {
    let plain = env
        .iter()
        .filter(|(name, _)| !secret_env.contains_key(*name))
        .map(|(name, value)| {
            run::EnvVar::new()
                .set_name(name.clone())
                .set_value(value.clone())
        });
    // Secrets reach the container as Secret Manager references, resolved by
    // Cloud Run at start as the job's account; their values never enter a
    // job definition.
    let secret = secret_env.iter().map(|(name, secret)| {
        run::EnvVar::new().set_name(name.clone()).set_value_source(
            run::EnvVarSource::new().set_secret_key_ref(
                run::SecretKeySelector::new()
                    .set_secret(format!("projects/{project}/secrets/{secret}"))
                    .set_version("latest"),
            ),
        )
    });
    plain.chain(secret).collect()
}

/// The secret references of a container, as a spec's `secret_env` (the
/// secret's name without its project).
fn secret_env_of(env: &[run::EnvVar]) -> BTreeMap<String, String> {
    env.iter()
        .filter_map(|e| {
            let secret = &e.value_source()?.secret_key_ref.as_ref()?.secret;
            let name = secret.rsplit('/').next().unwrap_or(secret);
            Some((e.name.clone(), name.to_owned()))
        })
        .collect()
}

fn spec_of(job: &run::Job) -> JobSpec {
    let task = job.template.as_ref().and_then(|t| t.template.as_ref());
    let container = task.and_then(|t| t.containers.first());
    JobSpec {
        name: job.name.rsplit('/').next().unwrap_or_default().to_owned(),
        labels: CellAdapter::labels_of(&job.labels),
        image: container.map(|c| c.image.clone()).unwrap_or_default(),
        args: container.map(|c| c.args.clone()).unwrap_or_default(),
        env: container
            .map(|c| {
                c.env
                    .iter()
                    .filter(|e| !is_adapter_variable(&e.name))
                    .filter_map(|e| e.value().map(|v| (e.name.clone(), v.clone())))
                    .collect()
            })
            .unwrap_or_default(),
        secret_env: container.map(|c| secret_env_of(&c.env)).unwrap_or_default(),
        service_account: task.map(|t| t.service_account.clone()).unwrap_or_default(),
        timeout_seconds: task
            .and_then(|t| t.timeout.as_ref())
            .map_or(0, |d| d.seconds().max(0) as u64),
    }
}

fn job_of(job: &run::Job) -> Job {
    Job {
        spec: spec_of(job),
        created_at: crate::timestamp(job.create_time.as_ref()),
        updated_at: crate::timestamp(job.update_time.as_ref()),
    }
}

fn execution_of(e: &run::Execution) -> Execution {
    let state = if e.completion_time.is_none() {
        ExecutionState::Running
    } else if e.succeeded_count > 0 && e.failed_count == 0 && e.cancelled_count == 0 {
        ExecutionState::Succeeded
    } else if e.cancelled_count > 0 {
        ExecutionState::Failed {
            message: "cancelled".into(),
        }
    } else {
        let message = e
            .conditions
            .iter()
            .map(|c| c.message.as_str())
            .find(|m| !m.is_empty())
            .unwrap_or("the task failed")
            .chars()
            .take(300)
            .collect();
        ExecutionState::Failed { message }
    };
    Execution {
        id: e.name.rsplit('/').next().unwrap_or_default().to_owned(),
        job: e.job.clone(),
        state,
        started_at: crate::timestamp(e.start_time.as_ref().or(e.create_time.as_ref())),
        finished_at: e
            .completion_time
            .as_ref()
            .map(|t| crate::timestamp(Some(t))),
    }
}

impl CellAdapter {
    fn jobs_parent(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.region)
    }

    fn job_path(&self, name: &str) -> String {
        format!("{}/jobs/{name}", self.jobs_parent())
    }

    /// What a tenant job needs to open its own cell as its own account: the
    /// adapter's settings (never a credential) and the cell.
    fn job_settings(&self, spec: &JobSpec) -> BTreeMap<String, String> {
        use crate::config as c;
        let config = &self.shared.config;
        let mut env = BTreeMap::from([
            ("LEDGERLAKE_CLOUD".to_owned(), "gcp".to_owned()),
            (
                c::PLATFORM_PROJECT.to_owned(),
                config.platform_project.clone(),
            ),
            (c::CELL_PROJECT.to_owned(), self.project.clone()),
            (c::REGION.to_owned(), self.region.clone()),
            (c::LOCATION.to_owned(), config.location.clone()),
            (c::TENANT_JOB_IMAGE.to_owned(), spec.image.clone()),
            (c::SERVICE_ACCOUNT.to_owned(), spec.service_account.clone()),
        ]);
        // Endpoints pointed elsewhere (emulators) go along; Google's are the default.
        for api in crate::Api::ALL {
            let url = config.endpoints.get(api);
            if url != api.default_endpoint() {
                env.insert(api.endpoint_variable().to_owned(), url.to_owned());
            }
        }
        env
    }

    /// The definition's plain variables: the spec's (never the adapter's
    /// own names, nor a referenced secret's) and the adapter's settings.
    fn plain_env(&self, spec: &JobSpec) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = spec
            .env
            .iter()
            .filter(|(name, _)| !is_adapter_variable(name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend(self.job_settings(spec));
        env.retain(|name, _| !spec.secret_env.contains_key(name));
        env
    }

    fn job_definition(&self, spec: &JobSpec) -> run::Job {
        let all_env = self.plain_env(spec);
        run::Job::new()
            .set_labels(spec.labels.clone())
            .set_template(
                run::ExecutionTemplate::new()
                    .set_task_count(1)
                    .set_template(
                        run::TaskTemplate::new()
                            .set_containers([run::Container::new()
                                .set_name(CONTAINER)
                                .set_image(spec.image.clone())
                                .set_args(spec.args.clone())
                                .set_env(env_vars(&all_env, &spec.secret_env, &self.project))])
                            .set_service_account(spec.service_account.clone())
                            .set_timeout(google_cloud_wkt::Duration::clamp(
                                spec.timeout_seconds as i64,
                                0,
                            ))
                            // A failed run is retried by the control plane, which knows
                            // why it failed; Cloud Run retrying too would double runs.
                            .set_max_retries(0),
                    ),
            )
    }
}

#[async_trait]
impl JobRunner for CellAdapter {
    async fn ensure_job(&self, spec: &JobSpec) -> CloudResult<Job> {
        let resource = format!("job {}", spec.name);
        let created = self
            .paced(QuotaClass::RunAdmin, || async {
                self.shared
                    .run_jobs
                    .create_job()
                    .set_parent(self.jobs_parent())
                    .set_job_id(spec.name.clone())
                    .set_job(self.job_definition(spec))
                    .poller()
                    .until_done()
                    .await
                    .map_err(|e| errors::from_gax(&resource, &e))
            })
            .await;
        match created {
            Ok(job) => Ok(job_of(&job)),
            Err(CloudError::AlreadyExists { .. }) => {
                let found = self.get_job(&spec.name).await?;
                crate::check_owner(resource.as_str(), &found.spec.labels, &spec.labels)?;
                if found.spec == *spec {
                    return Ok(found);
                }
                let updated = self
                    .paced(QuotaClass::RunAdmin, || async {
                        self.shared
                            .run_jobs
                            .update_job()
                            .set_job(
                                self.job_definition(spec)
                                    .set_name(self.job_path(&spec.name)),
                            )
                            .poller()
                            .until_done()
                            .await
                            .map_err(|e| errors::from_gax(&resource, &e))
                    })
                    .await?;
                Ok(job_of(&updated))
            }
            Err(e) => Err(e),
        }
    }

    async fn get_job(&self, name: &str) -> CloudResult<Job> {
        let resource = format!("job {name}");
        self.paced(QuotaClass::RunAdmin, || async {
            self.shared
                .run_jobs
                .get_job()
                .set_name(self.job_path(name))
                .send()
                .await
                .map(|j| job_of(&j))
                .map_err(|e| errors::from_gax(&resource, &e))
        })
        .await
    }

    async fn list_jobs(&self, labels: &Labels) -> CloudResult<Vec<Job>> {
        let resource = format!("jobs of {}", self.jobs_parent());
        let jobs = crate::pages::every_page(&resource, |token| {
            let resource = &resource;
            self.paced(QuotaClass::RunAdmin, move || {
                let request = self
                    .shared
                    .run_jobs
                    .list_jobs()
                    .set_parent(self.jobs_parent())
                    .set_page_size(100)
                    .set_page_token(token.clone());
                async move {
                    request
                        .send()
                        .await
                        .map(|page| (page.jobs, page.next_page_token))
                        .map_err(|e| errors::from_gax(resource, &e))
                }
            })
        })
        .await?;
        Ok(jobs
            .iter()
            .map(job_of)
            .filter(|j| crate::has_labels(&j.spec.labels, labels))
            .collect())
    }

    async fn delete_job(&self, name: &str) -> CloudResult<()> {
        let resource = format!("job {name}");
        self.paced(QuotaClass::RunAdmin, || async {
            self.shared
                .run_jobs
                .delete_job()
                .set_name(self.job_path(name))
                .poller()
                .until_done()
                .await
                .map(|_| ())
                .map_err(|e| errors::from_gax(&resource, &e))
        })
        .await
    }

    async fn run_job(&self, name: &str, overrides: &ExecutionOverrides) -> CloudResult<Execution> {
        let resource = format!("job {name}");
        let mut container = run::run_job_request::overrides::ContainerOverride::new()
            .set_name(CONTAINER)
            .set_env(
                env_vars(&overrides.env, &BTreeMap::new(), &self.project)
                    .into_iter()
                    .filter(|e| !is_adapter_variable(&e.name)),
            );
        if let Some(args) = &overrides.args {
            container = container.set_args(args.clone());
        }
        let operation = self
            .paced(QuotaClass::RunAdmin, || async {
                self.shared
                    .run_jobs
                    .run_job()
                    .set_name(self.job_path(name))
                    .set_overrides(
                        run::run_job_request::Overrides::new()
                            .set_container_overrides([container.clone()]),
                    )
                    .send()
                    .await
                    .map_err(|e| errors::from_gax(&resource, &e))
            })
            .await?;
        // The operation's metadata is the execution it started.
        let execution = operation
            .metadata
            .as_ref()
            .and_then(|m| m.to_msg::<run::Execution>().ok())
            .ok_or_else(|| {
                CloudError::permanent(&resource, "the run's operation names no execution")
            })?;
        let mut started = execution_of(&execution);
        // Just started: it cannot have finished from the control plane's view.
        started.state = ExecutionState::Running;
        started.finished_at = None;
        started.job = name.to_owned();
        Ok(started)
    }

    async fn get_execution(&self, job: &str, id: &str) -> CloudResult<Execution> {
        let resource = format!("execution {id} of job {job}");
        self.paced(QuotaClass::RunAdmin, || async {
            self.shared
                .run_executions
                .get_execution()
                .set_name(format!("{}/executions/{id}", self.job_path(job)))
                .send()
                .await
                .map(|e| Execution {
                    job: job.to_owned(),
                    ..execution_of(&e)
                })
                .map_err(|e| errors::from_gax(&resource, &e))
        })
        .await
    }

    fn definition_env(&self, spec: &JobSpec) -> BTreeMap<String, String> {
        self.plain_env(spec)
    }

    async fn cancel_execution(&self, job: &str, id: &str) -> CloudResult<Execution> {
        let resource = format!("execution {id} of job {job}");
        let cancelled = self
            .paced(QuotaClass::RunAdmin, || async {
                self.shared
                    .run_executions
                    .cancel_execution()
                    .set_name(format!("{}/executions/{id}", self.job_path(job)))
                    .poller()
                    .until_done()
                    .await
                    .map_err(|e| errors::from_gax(&resource, &e))
            })
            .await;
        match cancelled {
            Ok(e) => Ok(Execution {
                job: job.to_owned(),
                ..execution_of(&e)
            }),
            // Already finished: cancelling is a no-op, its state stands.
            Err(CloudError::Permanent { .. }) | Err(CloudError::Conflict { .. }) => {
                self.get_execution(job, id).await
            }
            Err(e) => Err(e),
        }
    }
}
