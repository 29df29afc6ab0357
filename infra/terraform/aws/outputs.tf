output "dashboard_url" {
  description = "The dashboard and API, behind the load balancer."
  value       = "${var.certificate_arn == "" ? "http" : "https"}://${aws_lb.api.dns_name}/"
}

output "kafka_bootstrap_brokers_tls" {
  description = "MSK bootstrap brokers (TLS)."
  value       = module.msk.bootstrap_brokers_tls
}

output "database_address" {
  description = "RDS PostgreSQL endpoint address."
  value       = module.rds.db_instance_address
}

output "database_secret_arn" {
  description = "Secrets Manager ARN of the RDS master credentials."
  value       = module.rds.db_instance_master_user_secret_arn
}

output "admin_token_secret_arn" {
  description = "Secrets Manager ARN of the API's admin token (needed for PUT /api/producer-config)."
  value       = aws_secretsmanager_secret.admin_token.arn
}

output "ecs_cluster" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "init_task_definition" {
  description = "Run this task once per deploy: migrations, topics and the initial configuration."
  value       = aws_ecs_task_definition.init.arn
}
