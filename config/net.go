package config

import (
	"fmt"
	"net"

	"github.com/courierq/courier/backend"
)

func loopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if !backend.IsLoopback(host) {
		return fmt.Errorf("%s is not loopback", host)
	}
	return nil
}
