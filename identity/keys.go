package identity

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"

	"github.com/llmgate/llmgate/internal/store"
)

// Credential kinds, as metrics and the request log name them.
const (
	KindKey        = "api_key"     // a key from the configuration file
	KindRuntimeKey = "runtime_key" // a key created through the admin API
	KindJWT        = "jwt"         // an OAuth2 / OIDC bearer token
)

// KeyPrefix starts every run-time key; what follows is the record's id
// (idLen hex digits) and the secret (secretLen base64url characters).
const KeyPrefix = "sk-lg-"

const (
	idLen          = 16 // hex digits: 8 random bytes
	secretBytes    = 32
	secretLen      = 43 // base64url, unpadded, of secretBytes
	saltBytes      = 16
	keyLen         = len(KeyPrefix) + idLen + secretLen
	shownPrefixLen = len(KeyPrefix) + 8 // what lists show: "sk-lg-" and half the id
	// MaxDescription is the longest description a key may carry, in bytes.
	MaxDescription = 512
	maxConsumerLen = 256
	recordsPerLoad = 512 // records per replication payload
)

// Errors of the key operations.
var (
	ErrUnknownConsumer = errors.New("identity: unknown consumer")
	ErrUnknownKey      = errors.New("identity: no such key")
	ErrInvalid         = errors.New("invalid key request")
	ErrClosed          = errors.New("identity: closed")
	// ErrNotMine means a credential is not one this authenticator knows at
	// all (not its format, or no such record): another may.
	ErrNotMine = errors.New("identity: not this authenticator's credential")
)

// Refusal is a credential this authenticator knows but does not accept
// (revoked, expired, a bad signature). Its message is safe to show the
// client: it never contains the credential.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return r.Reason }

func refuse(format string, a ...any) error { return &Refusal{Reason: fmt.Sprintf(format, a...)} }

// Principal is an authenticated caller.
type Principal struct {
	Consumer string
	// Kind is KindKey, KindRuntimeKey or KindJWT.
	Kind string
	// Issuer is the token's issuer (KindJWT).
	Issuer string
	// User is the end user named by the token's user_claim (KindJWT), "" if none.
	User string
	// KeyID is the run-time key's id (KindRuntimeKey).
	KeyID string
}

// KeyInfo is a run-time key as lists show it: never the key.
type KeyInfo struct {
	ID          string     `json:"id"`
	Prefix      string     `json:"prefix"`
	Description string     `json:"description"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
}

// NewKey is a key just created: the only time its secret is known.
type NewKey struct {
	ID        string     `json:"id"`
	Key       string     `json:"key"`
	Prefix    string     `json:"prefix"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// record is a run-time key as every node stores it. Records are immutable
// once published: a revocation makes a new one.
type record struct {
	ID          string    `json:"id"`
	Consumer    string    `json:"consumer"`
	Prefix      string    `json:"prefix"`
	Salt        []byte    `json:"salt"`
	Hash        []byte    `json:"hash"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
}

func (r *record) info() KeyInfo {
	ki := KeyInfo{ID: r.ID, Prefix: r.Prefix, Description: r.Description, CreatedAt: r.CreatedAt.UTC()}
	if !r.ExpiresAt.IsZero() {
		t := r.ExpiresAt.UTC()
		ki.ExpiresAt = &t
	}
	return ki
}

// check is the error for a record that must not be stored (from a peer or
// the disk); nil if it is well formed.
func (r *record) check() error {
	switch {
	case !validID(r.ID):
		return fmt.Errorf("key id %q is not %d lowercase hex digits", r.ID, idLen)
	case r.Consumer == "" || len(r.Consumer) > maxConsumerLen:
		return fmt.Errorf("key %s: bad consumer name", r.ID)
	case r.Prefix != KeyPrefix+r.ID[:shownPrefixLen-len(KeyPrefix)]:
		return fmt.Errorf("key %s: prefix does not match its id", r.ID)
	case len(r.Salt) != saltBytes || len(r.Hash) != sha256.Size:
		return fmt.Errorf("key %s: bad salt or hash length", r.ID)
	case len(r.Description) > MaxDescription || !utf8.ValidString(r.Description):
		return fmt.Errorf("key %s: bad description", r.ID)
	case r.CreatedAt.IsZero():
		return fmt.Errorf("key %s: no creation time", r.ID)
	}
	return nil
}

// merge returns what a node holding cur (nil: nothing) keeps when it
// learns in, and whether that differs from cur. Everything but the
// revocation is fixed at creation; the earliest revocation wins, so every
// order of merges ends in the same record.
func merge(cur, in *record) (*record, bool) {
	if cur == nil {
		return in, true
	}
	if in.RevokedAt.IsZero() || (!cur.RevokedAt.IsZero() && !in.RevokedAt.Before(cur.RevokedAt)) {
		return cur, false
	}
	next := *cur
	next.RevokedAt = in.RevokedAt
	return &next, true
}

func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func hashSecret(salt []byte, secret string) [sha256.Size]byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(secret))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// KeyOptions configure Keys.
type KeyOptions struct {
	// DB persists the records; nil keeps them in memory only (tests).
	DB     *badger.DB
	Logger *slog.Logger
	// Consumers are the consumers keys may be created for.
	Consumers []string
	Now       func() time.Time
}

// Keys owns the run-time keys of this node. Only run touches recs and news;
// Authenticate and List read the snapshot it publishes.
type Keys struct {
	db        *badger.DB
	log       *slog.Logger
	now       func() time.Time
	consumers map[string]bool

	inbox chan func()
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once

	recs map[string]*record // owned by run
	news []*record          // owned by run: local changes not yet handed to Outgoing
	snap atomic.Pointer[map[string]*record]
}

// OpenKeys loads the records from the database and starts the owner goroutine.
func OpenKeys(opts KeyOptions) (*Keys, error) {
	k := &Keys{
		db:        opts.DB,
		log:       cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)),
		now:       opts.Now,
		consumers: map[string]bool{},
		inbox:     make(chan func()),
		done:      make(chan struct{}),
		recs:      map[string]*record{},
	}
	if k.now == nil {
		k.now = time.Now
	}
	for _, c := range opts.Consumers {
		k.consumers[c] = true
	}
	if k.db != nil {
		err := k.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(store.PrefixKeys), PrefetchValues: true})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				item := it.Item()
				err := item.Value(func(v []byte) error {
					r := &record{}
					if err := json.Unmarshal(v, r); err != nil {
						return fmt.Errorf("decoding %s: %w", item.Key(), err)
					}
					if err := r.check(); err != nil {
						return err
					}
					k.recs[r.ID] = r
					return nil
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("identity: loading run-time keys: %w", err)
		}
	}
	k.publish()
	k.wg.Add(1)
	go k.run()
	return k, nil
}

// run executes the operations sent to the inbox, one at a time, until Close.
func (k *Keys) run() {
	defer k.wg.Done()
	for {
		select {
		case <-k.done:
			return
		case f := <-k.inbox:
			f()
		}
	}
}

// Close stops the owner goroutine; the records are already on disk.
func (k *Keys) Close() error {
	k.once.Do(func() {
		close(k.done)
		k.wg.Wait()
	})
	return nil
}

// do runs f on the owner goroutine and returns its error.
func (k *Keys) do(ctx context.Context, f func() error) error {
	reply := make(chan error, 1) // buffered: the owner never waits for a caller that left
	select {
	case k.inbox <- func() { reply <- f() }:
	case <-ctx.Done():
		return ctx.Err()
	case <-k.done:
		return ErrClosed
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publish makes the current records what requests see. Run only by run
// (and by OpenKeys before run starts).
func (k *Keys) publish() {
	snap := maps.Clone(k.recs)
	k.snap.Store(&snap)
}

// persist writes records before they are applied: what a node has
// acknowledged (a create, a revoke, a merge) survives a crash.
func (k *Keys) persist(rs ...*record) error {
	if k.db == nil || len(rs) == 0 {
		return nil
	}
	return k.db.Update(func(txn *badger.Txn) error {
		for _, r := range rs {
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := txn.Set([]byte(store.PrefixKeys+r.ID), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Create issues a new key for consumer, valid until expiresAt (zero: no
// expiry). The key is in the answer and nowhere else.
func (k *Keys) Create(ctx context.Context, consumer string, expiresAt time.Time, description string) (NewKey, error) {
	if !k.consumers[consumer] {
		return NewKey{}, ErrUnknownConsumer
	}
	now := k.now()
	if !expiresAt.IsZero() && !expiresAt.After(now) {
		return NewKey{}, fmt.Errorf("%w: expires_at %s is not in the future", ErrInvalid, expiresAt.UTC().Format(time.RFC3339))
	}
	if len(description) > MaxDescription || !utf8.ValidString(description) {
		return NewKey{}, fmt.Errorf("%w: description must be valid UTF-8 of at most %d bytes", ErrInvalid, MaxDescription)
	}
	var raw [8 + secretBytes + saltBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return NewKey{}, fmt.Errorf("identity: reading randomness: %w", err)
	}
	id := hex.EncodeToString(raw[:8])
	secret := base64.RawURLEncoding.EncodeToString(raw[8 : 8+secretBytes])
	salt := slices.Clone(raw[8+secretBytes:])
	h := hashSecret(salt, secret)
	r := &record{ID: id, Consumer: consumer, Prefix: KeyPrefix + id[:shownPrefixLen-len(KeyPrefix)], Salt: salt, Hash: h[:],
		Description: description, CreatedAt: now.UTC(), ExpiresAt: expiresAt.UTC()}
	err := k.do(ctx, func() error {
		if _, taken := k.recs[id]; taken {
			return fmt.Errorf("identity: key id %s already exists; try again", id)
		}
		if err := k.persist(r); err != nil {
			return fmt.Errorf("identity: storing key %s: %w", id, err)
		}
		k.recs[id] = r
		k.news = append(k.news, r)
		k.publish()
		return nil
	})
	if err != nil {
		return NewKey{}, err
	}
	return NewKey{ID: id, Key: KeyPrefix + id + secret, Prefix: r.Prefix, ExpiresAt: r.info().ExpiresAt}, nil
}

// List returns consumer's keys that are not revoked (expired ones
// included, with their expiry), oldest first.
func (k *Keys) List(_ context.Context, consumer string) ([]KeyInfo, error) {
	if !k.consumers[consumer] {
		return nil, ErrUnknownConsumer
	}
	out := []KeyInfo{}
	for _, r := range *k.snap.Load() {
		if r.Consumer == consumer && r.RevokedAt.IsZero() {
			out = append(out, r.info())
		}
	}
	slices.SortFunc(out, func(a, b KeyInfo) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Revoke revokes consumer's key id on this node at once and on the others
// as soon as the cluster carries the news. Revoking a revoked key is not
// an error.
func (k *Keys) Revoke(ctx context.Context, consumer, id string) error {
	if !k.consumers[consumer] {
		return ErrUnknownConsumer
	}
	return k.do(ctx, func() error {
		cur := k.recs[id]
		if cur == nil || cur.Consumer != consumer {
			return ErrUnknownKey
		}
		if !cur.RevokedAt.IsZero() {
			return nil
		}
		next := *cur
		next.RevokedAt = k.now().UTC()
		if err := k.persist(&next); err != nil {
			return fmt.Errorf("identity: storing the revocation of key %s: %w", id, err)
		}
		k.recs[id] = &next
		k.news = append(k.news, &next)
		k.publish()
		return nil
	})
}

// Authenticate checks a run-time key. It returns ErrNotMine for anything
// that is not a run-time key of this cluster, a *Refusal for a key whose
// secret matches but that is revoked or expired, or for a wrong secret.
// It takes no lock and does no I/O.
func (k *Keys) Authenticate(key string) (Principal, error) {
	if len(key) != keyLen || !strings.HasPrefix(key, KeyPrefix) {
		return Principal{}, ErrNotMine
	}
	id, secret := key[len(KeyPrefix):len(KeyPrefix)+idLen], key[len(KeyPrefix)+idLen:]
	r, ok := (*k.snap.Load())[id]
	if !ok {
		return Principal{}, ErrNotMine
	}
	h := hashSecret(r.Salt, secret)
	if subtle.ConstantTimeCompare(h[:], r.Hash) != 1 {
		return Principal{}, refuse("Incorrect API key provided.")
	}
	// Only a caller who holds the secret learns why its key stopped working.
	if !r.RevokedAt.IsZero() {
		return Principal{}, refuse("This API key (%s…) has been revoked.", r.Prefix)
	}
	if !r.ExpiresAt.IsZero() && !k.now().Before(r.ExpiresAt) {
		return Principal{}, refuse("This API key (%s…) expired at %s.", r.Prefix, r.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return Principal{Consumer: r.Consumer, Kind: KindRuntimeKey, KeyID: r.ID}, nil
}

// Outgoing returns the local changes since the previous call (full=false)
// or every record (full=true, for push/pull), as payloads for Merge on
// the other nodes. Called by the cluster every flush interval.
func (k *Keys) Outgoing(ctx context.Context, full bool) ([][]byte, error) {
	var rs []*record
	err := k.do(ctx, func() error {
		if full {
			rs = slices.Collect(maps.Values(k.recs))
		} else {
			rs, k.news = k.news, nil
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for chunk := range slices.Chunk(rs, recordsPerLoad) {
		b, err := encodeRecords(chunk)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Merge applies a payload from another node's Outgoing. Changed records are
// persisted before they are applied; a malformed record is skipped (logged),
// the others applied.
func (k *Keys) Merge(ctx context.Context, payload []byte) error {
	in, err := decodeRecords(payload)
	if err != nil {
		return err
	}
	return k.do(ctx, func() error {
		var changed []*record
		for _, r := range in {
			if err := r.check(); err != nil {
				k.log.Warn("ignoring a peer's run-time key record", "err", err)
				continue
			}
			if next, ok := merge(k.recs[r.ID], r); ok {
				changed = append(changed, next)
			}
		}
		if len(changed) == 0 {
			return nil
		}
		if err := k.persist(changed...); err != nil {
			return fmt.Errorf("identity: storing %d replicated key records: %w", len(changed), err)
		}
		for _, r := range changed {
			k.recs[r.ID] = r
		}
		k.publish()
		return nil
	})
}

// payload is the wire form of records: a version for later changes.
type payload struct {
	V    int       `json:"v"`
	Keys []*record `json:"keys"`
}

// encodeRecords is the replication payload of rs.
func encodeRecords(rs []*record) ([]byte, error) {
	return json.Marshal(payload{V: 1, Keys: rs})
}

// decodeRecords parses a replication payload; records are checked by the caller.
func decodeRecords(b []byte) ([]*record, error) {
	var p payload
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("identity: decoding key records: %w", err)
	}
	if p.V != 1 {
		return nil, fmt.Errorf("identity: key records of unknown version %d", p.V)
	}
	for i, r := range p.Keys {
		if r == nil {
			return nil, fmt.Errorf("identity: key record %d is null", i)
		}
	}
	return p.Keys, nil
}
