output "register_command" {
  description = "Registers the cell with the control plane once applied."
  value       = "control-plane cells add ${var.cell_id} --project ${var.project_id} --region ${var.region} --capacity ${var.capacity}"
}

output "project_number" {
  description = "The cell project's number."
  value       = data.google_project.cell.number
}

output "labels" {
  description = "The labels the cell's own resources carry."
  value       = local.labels
}
