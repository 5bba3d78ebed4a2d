package sdktest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

const key = "sk-sdk-test"

// gateway is the base URL of a node started for the tests, in front of the
// mock upstream; both processes end with the tests.
var gateway string

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sdktest:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "llmgate-sdk-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "llmgate")
	if out, err := exec.Command("go", "build", "-C", "..", "-o", bin, "./cmd/llmgate").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("building llmgate: %v\n%s", err, out)
	}
	mock := exec.Command(bin, "mock-upstream", "--listen", "127.0.0.1:0", "--latency", "0")
	out, err := mock.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := mock.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = mock.Process.Kill(); _ = mock.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("mock-upstream printed no address: %w", err)
	}
	fields := strings.Fields(line)
	mockURL := "http://" + fields[len(fields)-1]

	listen, admin, gossip := freeAddr(), freeAddr(), freeAddr()
	node := exec.Command(bin, "serve", "--upstream", mockURL+"/v1", "--listen", listen, "--admin-listen", admin,
		"--gossip", gossip, "--data-dir", filepath.Join(dir, "data"))
	node.Env = append(os.Environ(), "LLMGATE_DEV_KEY="+key)
	if err := node.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = node.Process.Kill(); _ = node.Wait() }()
	gateway = "http://" + listen
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the node did not listen within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return m.Run(), nil
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestGoResponsesCreate(t *testing.T) {
	client := openai.NewClient(option.WithBaseURL(gateway+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
	resp, err := client.Responses.New(ctx(t), responses.ResponseNewParams{
		Model: "gpt-4o",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Name a river.")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != "completed" || resp.OutputText() == "" || resp.Usage.OutputTokens == 0 {
		t.Fatalf("response: status %q text %q usage %+v", resp.Status, resp.OutputText(), resp.Usage)
	}
	got, err := client.Responses.Get(ctx(t), resp.ID, responses.ResponseGetParams{})
	if err != nil || got.OutputText() != resp.OutputText() {
		t.Fatalf("retrieve: %v %+v", err, got)
	}
	if err := client.Responses.Delete(ctx(t), resp.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

func TestGoResponsesStream(t *testing.T) {
	client := openai.NewClient(option.WithBaseURL(gateway+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
	stream := client.Responses.NewStreaming(ctx(t), responses.ResponseNewParams{
		Model: "gpt-4o",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Name a lake.")},
	})
	var text strings.Builder
	var completed responses.Response
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "response.output_text.delta":
			text.WriteString(ev.Delta)
		case "response.completed":
			completed = ev.Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.Len() == 0 || completed.OutputText() != text.String() || completed.Usage.TotalTokens == 0 {
		t.Fatalf("deltas %q, completed %q usage %+v", text.String(), completed.OutputText(), completed.Usage)
	}
}

// TestGoAzureV1Chat: the OpenAI client pointed at the gateway's Azure v1 base URL.
func TestGoAzureV1Chat(t *testing.T) {
	client := openai.NewClient(option.WithBaseURL(gateway+"/openai/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
	c, err := client.Chat.Completions.New(ctx(t), openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Choices) != 1 || c.Choices[0].Message.Content == "" || c.Usage.TotalTokens == 0 {
		t.Fatalf("chat: %+v", c)
	}
}

// TestNodeSDK runs sdktest/node/sdk.mjs (the openai npm package) against
// the same node. Under CI it must run; elsewhere it skips when node or the
// package is missing (npm ci --prefix sdktest/node installs it).
func TestNodeSDK(t *testing.T) {
	_, nodeErr := exec.LookPath("node")
	_, pkgErr := os.Stat(filepath.Join("node", "node_modules", "openai", "package.json"))
	if nodeErr != nil || pkgErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs node and the openai package: node %v, package %v", nodeErr, pkgErr)
		}
		t.Skip("node or the openai npm package is missing (npm ci --prefix sdktest/node)")
	}
	cmd := exec.CommandContext(ctx(t), "node", "sdk.mjs")
	cmd.Dir = "node"
	cmd.Env = append(os.Environ(), "LLMGATE_URL="+gateway, "LLMGATE_KEY="+key)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node sdk.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
