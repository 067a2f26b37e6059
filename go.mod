module github.com/dlxretry/dlxretry

go 1.25.0

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/rabbitmq/amqp091-go v1.16.0
)
