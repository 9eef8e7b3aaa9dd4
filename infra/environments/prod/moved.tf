# For a platform applied from the former root terraform/platform (state
# prefix ledgerlake/platform) before it became terraform/modules/platform:
# copy that state here once (infra/RUNBOOK.md, "Moving the former root's
# state"), and these blocks re-address its resources, so the plan shows moves,
# not a new platform. Without such a state they do nothing.

moved {
  from = google_project_service.platform
  to   = module.platform.google_project_service.platform
}

moved {
  from = google_artifact_registry_repository.images
  to   = module.platform.google_artifact_registry_repository.images
}

moved {
  from = google_service_account.scheduler
  to   = module.platform.google_service_account.scheduler
}

moved {
  from = module.control_plane
  to   = module.platform.module.control_plane
}

moved {
  from = module.scheduler
  to   = module.platform.module.scheduler
}

moved {
  from = module.cell
  to   = module.platform.module.cell
}
