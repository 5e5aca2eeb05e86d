// Reads an sshsign appliance's audit log over HTTP as C2SP tlog-tiles with Go's own
// golang.org/x/mod/sumdb packages (the checksum database's client code): checks the
// checkpoint's signature under the verifier key with sumdb/note, then has sumdb/tlog read the
// hash tiles, check them against the signed tree, recompute its root and prove and check one
// record. Prints "ok SIZE ROOT" or fails.
//
// Usage: verify_tiles BASE_URL VERIFIER_KEY, where BASE_URL is http://HOST:PORT/audit.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// tiles fetches hash tiles. Go names them tile/H/L/N; C2SP tlog-tiles drops the height (8).
type tiles struct{ base string }

func (t tiles) Height() int { return 8 }

func (t tiles) ReadTiles(list []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(list))
	for i, tile := range list {
		path := strings.Replace(tile.Path(), "tile/8/", "tile/", 1)
		data, err := get(t.base + "/" + path)
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (t tiles) SaveTiles([]tlog.Tile, [][]byte) {}

func get(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: verify_tiles BASE_URL VERIFIER_KEY")
	}
	base, vkey := os.Args[1], os.Args[2]
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	raw, err := get(base + "/checkpoint")
	if err != nil {
		fail("checkpoint: %v", err)
	}
	signed, err := note.Open(raw, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(signed.Text, "\n")
	if len(lines) < 3 {
		fail("checkpoint body: %q", signed.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	hash, err := tlog.ParseHash(lines[2])
	if err != nil {
		fail("checkpoint root: %v", err)
	}
	tree := tlog.Tree{N: size, Hash: hash}
	reader := tlog.TileHashReader(tree, tiles{base})
	root, err := tlog.TreeHash(tree.N, reader)
	if err != nil {
		fail("tree hash from tiles: %v", err)
	}
	if root != tree.Hash {
		fail("the tiles hash to %v, the checkpoint says %v", root, tree.Hash)
	}
	last := tree.N - 1
	leaves, err := reader.ReadHashes([]int64{tlog.StoredHashIndex(0, last)})
	if err != nil {
		fail("leaf hash %d: %v", last, err)
	}
	proof, err := tlog.ProveRecord(tree.N, last, reader)
	if err != nil {
		fail("record proof: %v", err)
	}
	if err := tlog.CheckRecord(proof, tree.N, tree.Hash, last, leaves[0]); err != nil {
		fail("record check: %v", err)
	}
	fmt.Printf("ok %d %v\n", tree.N, root)
}
