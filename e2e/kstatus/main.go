// kstatus reads Kubernetes objects as JSON, one per line, and prints for each the status that
// sigs.k8s.io/cli-utils' kstatus library (what Flux and kpt use to wait for resources) computes:
// "<status>\t<message>". e2e/test_gitops.py feeds it cardpool's live objects.
package main

import (
	"bufio"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<24)
	for scanner.Scan() {
		var obj map[string]interface{}
		// apimachinery's json keeps whole numbers int64, as unstructured objects need them
		if err := json.Unmarshal(scanner.Bytes(), &obj); err != nil {
			fmt.Fprintln(os.Stderr, "kstatus: not a JSON object:", err)
			os.Exit(2)
		}
		result, err := status.Compute(&unstructured.Unstructured{Object: obj})
		if err != nil {
			fmt.Fprintln(os.Stderr, "kstatus:", err)
			os.Exit(1)
		}
		fmt.Printf("%s\t%s\n", result.Status, result.Message)
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(2)
	}
}
