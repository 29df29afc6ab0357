variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"
}

variable "environment" {
  description = "Environment name, used in resource names and tags."
  type        = string
  default     = "dev"
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Availability zones to spread subnets, brokers and tasks over (MSK needs 3 for 3 brokers)."
  type        = number
  default     = 3
}

variable "image" {
  description = "The sensorpipe container image (one image for producer, consumer and API), e.g. an ECR URI with a tag."
  type        = string
}

variable "kafka_version" {
  description = "Apache Kafka version of the MSK cluster (KRaft)."
  type        = string
  default     = "3.9.x.kraft"
}

variable "kafka_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "kafka_volume_size" {
  description = "EBS volume per broker, in GiB."
  type        = number
  default     = 100
}

variable "topic_partitions" {
  description = "Partitions of sensor_metrics. Part of the message contract: never change it on a live topic."
  type        = number
  default     = 12
}

variable "db_instance_class" {
  description = "RDS PostgreSQL instance class."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_allocated_storage" {
  description = "RDS storage in GiB."
  type        = number
  default     = 100
}

variable "db_multi_az" {
  description = "Run RDS as a Multi-AZ deployment (a standby in another zone)."
  type        = bool
  default     = false
}

variable "db_deletion_protection" {
  description = "Protect the database from deletion (turn off only to destroy a test stack)."
  type        = bool
  default     = true
}

variable "retention_days" {
  description = "Days of metrics kept by the consumer; also its dedupe window."
  type        = number
  default     = 7
}

variable "producer_rate" {
  description = "Initial producer rate in events/s, stored in the configuration store by the init task."
  type        = number
  default     = 5000
}

variable "producer_sensors" {
  description = "Initial number of simulated sensors."
  type        = number
  default     = 2000
}

variable "consumer_min_tasks" {
  description = "Fewest consumer tasks."
  type        = number
  default     = 1
}

variable "consumer_max_tasks" {
  description = "Most consumer tasks; more than the partition count would sit idle."
  type        = number
  default     = 12
}

variable "consumer_cpu_target" {
  description = "Average consumer CPU utilisation (percent) that autoscaling aims for."
  type        = number
  default     = 60
}

variable "alb_ingress_cidrs" {
  description = "Who may reach the dashboard and API through the load balancer's listener."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS on the load balancer; empty serves plain HTTP (demo only)."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "CloudWatch log retention for every service, in days (a year by default, for audits)."
  type        = number
  default     = 365
}
