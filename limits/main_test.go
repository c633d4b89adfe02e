package limits_test

import (
	"testing"

	"github.com/courierq/courier/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
