package main

import (
	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/backend/hello"
)

// services lists every gRPC service courierd hosts, with its default
// authorization policy (a config file's grpc.policies can replace it). This
// is the one place a new service is added.
func services() []backend.Service {
	return []backend.Service{
		&hello.Service{Auth: hello.Open},
	}
}
