region      = "eu-west-1"
environment = "demo"
image       = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sensorpipe:0.1.0"

# A small demo stack. Production: larger brokers, Multi-AZ, HTTPS and narrower CIDRs.
kafka_instance_type    = "kafka.t3.small"
db_instance_class      = "db.t4g.medium"
db_multi_az            = false
db_deletion_protection = false
alb_ingress_cidrs      = ["203.0.113.0/24"]
consumer_max_tasks     = 12
