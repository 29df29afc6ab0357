data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:The stack takes the first var.az_count zones of the region at plan time; a new zone changes nothing already built.
  state = "available"
}

data "aws_caller_identity" "current" {}

locals {
  name = "sensorpipe-${var.environment}"
  azs  = slice(data.aws_availability_zones.available.names, 0, var.az_count)

  # Settings every sensorpipe task shares. The database password comes from Secrets Manager.
  app_environment = [
    { name = "SENSORPIPE_KAFKA_BOOTSTRAP_SERVERS", value = module.msk.bootstrap_brokers_tls },
    { name = "SENSORPIPE_KAFKA_SECURITY_PROTOCOL", value = "SSL" },
    { name = "SENSORPIPE_KAFKA_PARTITIONS", value = tostring(var.topic_partitions) },
    { name = "SENSORPIPE_DATABASE_HOST", value = module.rds.db_instance_address },
    { name = "SENSORPIPE_DATABASE_PORT", value = "5432" },
    { name = "SENSORPIPE_DATABASE_NAME", value = "sensorpipe" },
    { name = "SENSORPIPE_DATABASE_USER", value = "sensorpipe" },
    { name = "SENSORPIPE_DATABASE_SSLMODE", value = "require" },
    { name = "SENSORPIPE_DATABASE_RETENTION_DAYS", value = tostring(var.retention_days) },
  ]
  app_secrets = [
    { name = "SENSORPIPE_DATABASE_PASSWORD", valueFrom = "${module.rds.db_instance_master_user_secret_arn}:password::" },
  ]

  services = {
    api = {
      command    = ["api", "--host", "0.0.0.0", "--port", "8000"]
      health_url = "http://127.0.0.1:8000/healthz"
      cpu        = 512
      memory     = 1024
      desired    = 2
      extra_env  = []
      extra_secrets = [
        { name = "SENSORPIPE_ADMIN_TOKEN", valueFrom = aws_secretsmanager_secret.admin_token.arn },
      ]
    }
    consumer = {
      command       = ["consumer"]
      health_url    = "http://127.0.0.1:9400/metrics"
      cpu           = 1024
      memory        = 2048
      desired       = var.consumer_min_tasks
      extra_env     = []
      extra_secrets = []
    }
    producer = {
      command       = ["producer", "--api-url", "http://${aws_lb.api.dns_name}"]
      health_url    = "http://127.0.0.1:9300/metrics"
      cpu           = 1024
      memory        = 2048
      desired       = 1
      extra_env     = []
      extra_secrets = []
    }
  }
}

################################################################################
# Network
################################################################################

module "vpc" {
  #checkov:skip=CKV_TF_1:Registry modules are pinned to an exact, immutable version; a commit hash adds nothing.
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.17.0"

  name = local.name
  cidr = var.vpc_cidr
  azs  = local.azs

  public_subnets   = [for k, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, k)]
  private_subnets  = [for k, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, k + 10)]
  database_subnets = [for k, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, k + 20)]

  create_database_subnet_group = true
  enable_nat_gateway           = true
  single_nat_gateway           = true
  enable_dns_hostnames         = true

  enable_flow_log                      = true
  create_flow_log_cloudwatch_log_group = true
  create_flow_log_cloudwatch_iam_role  = true
  flow_log_max_aggregation_interval    = 60
}

resource "aws_kms_key" "data" {
  description         = "${local.name}: MSK, RDS, secrets and logs at rest"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncrypt"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
      },
    ]
  })
}

################################################################################
# Security groups: least privilege. Only the load balancer's listener is open to
# var.alb_ingress_cidrs; Kafka and PostgreSQL accept only the sensorpipe tasks.
################################################################################

resource "aws_security_group" "alb" {
  name_prefix = "${local.name}-alb-"
  description = "sensorpipe load balancer: HTTP(S) from the allowed CIDRs"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb_listener" {
  for_each          = toset(var.alb_ingress_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "Listener"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.certificate_arn == "" ? 80 : 443
  to_port           = var.certificate_arn == "" ? 80 : 443
}

resource "aws_vpc_security_group_egress_rule" "alb_to_api" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the API tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 8000
  to_port                      = 8000
}

resource "aws_security_group" "tasks" {
  name_prefix = "${local.name}-tasks-"
  description = "sensorpipe ECS tasks"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "API from the load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = 8000
  to_port                      = 8000
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_msk" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Kafka over TLS"
  referenced_security_group_id = aws_security_group.msk.id
  ip_protocol                  = "tcp"
  from_port                    = 9094
  to_port                      = 9094
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_rds" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "PostgreSQL"
  referenced_security_group_id = aws_security_group.rds.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs (ECR, Secrets Manager, CloudWatch) through the NAT gateway"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_alb" {
  security_group_id = aws_security_group.tasks.id
  description       = "The producer polls the configuration through the internal path of the load balancer"
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_security_group" "msk" {
  #checkov:skip=CKV2_AWS_5:Attached to the brokers inside the msk module (broker_node_security_groups), which checkov does not follow.
  name_prefix = "${local.name}-msk-"
  description = "MSK brokers: TLS clients from the sensorpipe tasks only"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "msk_from_tasks" {
  security_group_id            = aws_security_group.msk.id
  description                  = "Kafka TLS from the sensorpipe tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 9094
  to_port                      = 9094
}

resource "aws_security_group" "rds" {
  #checkov:skip=CKV2_AWS_5:Attached to the instance inside the rds module (vpc_security_group_ids), which checkov does not follow.
  name_prefix = "${local.name}-rds-"
  description = "PostgreSQL: from the sensorpipe tasks only"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "rds_from_tasks" {
  security_group_id            = aws_security_group.rds.id
  description                  = "PostgreSQL from the sensorpipe tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

################################################################################
# Kafka: MSK, 3 brokers, TLS in transit, encrypted at rest
################################################################################

module "msk" {
  #checkov:skip=CKV_TF_1:Registry modules are pinned to an exact, immutable version; a commit hash adds nothing.
  source  = "terraform-aws-modules/msk-kafka-cluster/aws"
  version = "2.11.1"

  name                   = local.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = 3

  broker_node_client_subnets  = module.vpc.private_subnets
  broker_node_instance_type   = var.kafka_instance_type
  broker_node_security_groups = [aws_security_group.msk.id]
  broker_node_storage_info = {
    ebs_storage_info = { volume_size = var.kafka_volume_size }
  }

  encryption_in_transit_client_broker = "TLS"
  encryption_in_transit_in_cluster    = true
  encryption_at_rest_kms_key_arn      = aws_kms_key.data.arn

  configuration_name        = "${local.name}-config"
  configuration_description = "sensorpipe: RF 3, min ISR 2, no auto-created topics"
  configuration_server_properties = {
    "auto.create.topics.enable"      = false
    "default.replication.factor"     = 3
    "min.insync.replicas"            = 2
    "num.partitions"                 = var.topic_partitions
    "unclean.leader.election.enable" = false
  }

  enhanced_monitoring                    = "PER_TOPIC_PER_PARTITION"
  cloudwatch_logs_enabled                = true
  cloudwatch_log_group_retention_in_days = var.log_retention_days
  cloudwatch_log_group_kms_key_id        = aws_kms_key.data.arn
}

################################################################################
# PostgreSQL: RDS, encrypted, optional Multi-AZ, credentials in Secrets Manager
################################################################################

module "rds" {
  #checkov:skip=CKV_TF_1:Registry modules are pinned to an exact, immutable version; a commit hash adds nothing.
  source  = "terraform-aws-modules/rds/aws"
  version = "6.10.0"

  identifier = local.name

  engine               = "postgres"
  engine_version       = "15"
  family               = "postgres15"
  major_engine_version = "15"
  instance_class       = var.db_instance_class
  allocated_storage    = var.db_allocated_storage
  storage_type         = "gp3"

  db_name  = "sensorpipe"
  username = "sensorpipe"
  port     = 5432

  # RDS generates the password and keeps it in Secrets Manager; tasks read it from there.
  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.data.arn

  multi_az               = var.db_multi_az
  db_subnet_group_name   = module.vpc.database_subnet_group
  vpc_security_group_ids = [aws_security_group.rds.id]

  storage_encrypted                      = true
  kms_key_id                             = aws_kms_key.data.arn
  deletion_protection                    = var.db_deletion_protection
  backup_retention_period                = 7
  copy_tags_to_snapshot                  = true
  auto_minor_version_upgrade             = true
  iam_database_authentication_enabled    = true
  performance_insights_enabled           = true
  performance_insights_kms_key_id        = aws_kms_key.data.arn
  enabled_cloudwatch_logs_exports        = ["postgresql"]
  monitoring_interval                    = 60
  create_monitoring_role                 = true
  create_cloudwatch_log_group            = true
  cloudwatch_log_group_retention_in_days = var.log_retention_days
  cloudwatch_log_group_kms_key_id        = aws_kms_key.data.arn

  parameters = [
    { name = "synchronous_commit", value = "on" },
    { name = "rds.force_ssl", value = "1" },
  ]
}

resource "aws_secretsmanager_secret" "admin_token" {
  #checkov:skip=CKV2_AWS_57:No rotation Lambda exists for an application token; rotate by writing a new secret version and redeploying the API.
  name_prefix = "${local.name}-admin-token-"
  description = "Bearer token for writes to the sensorpipe configuration store"
  kms_key_id  = aws_kms_key.data.arn
}

resource "aws_secretsmanager_secret_version" "admin_token" {
  secret_id     = aws_secretsmanager_secret.admin_token.id
  secret_string = random_password.admin_token.result
}

resource "random_password" "admin_token" {
  length  = 40
  special = false
}

################################################################################
# ECS Fargate: producer, consumer (autoscaled 1..12), API; init runs once per deploy
################################################################################

resource "aws_ecs_cluster" "this" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "service" {
  for_each          = toset(concat(keys(local.services), ["init"]))
  name              = "/ecs/${local.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name_prefix        = "${local.name}-exec-"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "read_secrets" {
  statement {
    sid       = "ReadAppSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [module.rds.db_instance_master_user_secret_arn, aws_secretsmanager_secret.admin_token.arn]
  }
  statement {
    sid       = "DecryptAppSecrets"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "read_secrets" {
  name_prefix = "read-secrets-"
  role        = aws_iam_role.execution.id
  policy      = data.aws_iam_policy_document.read_secrets.json
}

resource "aws_iam_role" "task" {
  name_prefix        = "${local.name}-task-"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_ecs_task_definition" "service" {
  for_each = local.services

  family                   = "${local.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  container_definitions = jsonencode([{
    name                   = each.key
    image                  = var.image
    command                = each.value.command
    essential              = true
    readonlyRootFilesystem = false
    environment = concat(local.app_environment, each.value.extra_env, [
      { name = "SENSORPIPE_HEALTH_URL", value = each.value.health_url },
    ])
    secrets      = concat(local.app_secrets, each.value.extra_secrets)
    portMappings = each.key == "api" ? [{ containerPort = 8000, protocol = "tcp" }] : []
    healthCheck = {
      command     = ["CMD", "python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['SENSORPIPE_HEALTH_URL'], timeout=2)"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
        awslogs-region        = var.region
        awslogs-stream-prefix = each.key
      }
    }
  }])
}

resource "aws_ecs_task_definition" "init" {
  family                   = "${local.name}-init"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  container_definitions = jsonencode([{
    name        = "init"
    image       = var.image
    command     = ["init", "--rate", tostring(var.producer_rate), "--sensors", tostring(var.producer_sensors)]
    essential   = true
    environment = local.app_environment
    secrets     = local.app_secrets
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service["init"].name
        awslogs-region        = var.region
        awslogs-stream-prefix = "init"
      }
    }
  }])
}

resource "aws_ecs_service" "service" {
  for_each = local.services

  name            = each.key
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.service[each.key].arn
  desired_count   = each.value.desired
  launch_type     = "FARGATE"

  network_configuration {
    subnets          = module.vpc.private_subnets
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = each.key == "api" ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.api.arn
      container_name   = "api"
      container_port   = 8000
    }
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    # the consumer's count belongs to autoscaling once it runs
    ignore_changes = [desired_count]
  }
}

resource "aws_appautoscaling_target" "consumer" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.service["consumer"].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.consumer_min_tasks
  max_capacity       = var.consumer_max_tasks
}

resource "aws_appautoscaling_policy" "consumer_cpu" {
  name               = "${local.name}-consumer-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.consumer.service_namespace
  resource_id        = aws_appautoscaling_target.consumer.resource_id
  scalable_dimension = aws_appautoscaling_target.consumer.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.consumer_cpu_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

################################################################################
# Load balancer for the API and the dashboard
################################################################################

resource "aws_lb" "api" {
  #checkov:skip=CKV2_AWS_28:No WAF for a demo stack; reach is limited by var.alb_ingress_cidrs. Put AWS WAF in front for public use.
  #checkov:skip=CKV_AWS_91:Access logs need an S3 bucket with its own lifecycle; left to the operator, the API logs every request to CloudWatch.
  name                       = substr(local.name, 0, 32)
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = module.vpc.public_subnets
  drop_invalid_header_fields = true
  enable_deletion_protection = var.db_deletion_protection
}

resource "aws_lb_target_group" "api" {
  name_prefix = "spapi-"
  port        = 8000
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = module.vpc.vpc_id

  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "api" {
  #checkov:skip=CKV_AWS_103:With a certificate the listener is HTTPS with a TLS 1.3 policy; without one (demo only) it is plain HTTP, as the README warns.
  load_balancer_arn = aws_lb.api.arn
  port              = var.certificate_arn == "" ? 80 : 443
  protocol          = var.certificate_arn == "" ? "HTTP" : "HTTPS"
  ssl_policy        = var.certificate_arn == "" ? null : "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn == "" ? null : var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }
}
