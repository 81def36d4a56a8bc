// Package conformance runs the upstream Gateway API conformance suite, unmodified, against
// weir. Everything the suite is told (gateway class, profiles, report path, supported
// features) comes from its own command-line flags; see README.md.
package conformance

import (
	"testing"

	"sigs.k8s.io/gateway-api/conformance"
)

func TestConformance(t *testing.T) {
	conformance.RunConformance(t)
}
