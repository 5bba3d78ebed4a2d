package telemetry

import (
	"math"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// The OTLP trace protobuf (opentelemetry-proto, trace/v1, common/v1,
// resource/v1), written straight to the wire: what the SDK's exporter
// builds as a tree of generated structs (one allocation per attribute value)
// and then marshals, appended here to a byte slice. The field numbers are
// the proto's; TestSpanEncodingMatchesTheSDKExporter decodes the result
// with the generated types and compares it with the SDK exporter's.

// Field numbers.
const (
	fRequestResourceSpans = 1 // ExportTraceServiceRequest.resource_spans

	fResourceSpansResource   = 1
	fResourceSpansScopeSpans = 2
	fResourceSpansSchemaURL  = 3

	fResourceAttributes = 1

	fScopeSpansScope     = 1
	fScopeSpansSpans     = 2
	fScopeSpansSchemaURL = 3

	fScopeName       = 1
	fScopeVersion    = 2
	fScopeAttributes = 3

	fSpanTraceID           = 1
	fSpanSpanID            = 2
	fSpanTraceState        = 3
	fSpanParentSpanID      = 4
	fSpanName              = 5
	fSpanKind              = 6
	fSpanStart             = 7
	fSpanEnd               = 8
	fSpanAttributes        = 9
	fSpanDroppedAttributes = 10
	fSpanEvents            = 11
	fSpanDroppedEvents     = 12
	fSpanLinks             = 13
	fSpanDroppedLinks      = 14
	fSpanStatus            = 15
	fSpanFlags             = 16

	fEventTime              = 1
	fEventName              = 2
	fEventAttributes        = 3
	fEventDroppedAttributes = 4

	fLinkTraceID           = 1
	fLinkSpanID            = 2
	fLinkTraceState        = 3
	fLinkAttributes        = 4
	fLinkDroppedAttributes = 5
	fLinkFlags             = 6

	fStatusMessage = 2
	fStatusCode    = 3

	fKeyValueKey   = 1
	fKeyValueValue = 2

	fAnyString = 1
	fAnyBool   = 2
	fAnyInt    = 3
	fAnyDouble = 4
	fAnyArray  = 5
	fAnyKVList = 6
	fAnyBytes  = 7

	fArrayValues  = 1 // ArrayValue.values and KeyValueList.values
	fKVListValues = 1
)

// SpanFlags: the low 8 bits are the W3C trace flags; the exporter always
// says whether the parent is remote.
const (
	flagHasIsRemote = 0x100
	flagIsRemote    = 0x200
)

// appendSpan appends one Span message's body (no tag, no length) for s.
func appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = protowire.AppendTag(b, fSpanTraceID, protowire.BytesType)
	b = protowire.AppendBytes(b, tid[:])
	b = protowire.AppendTag(b, fSpanSpanID, protowire.BytesType)
	b = protowire.AppendBytes(b, sid[:])
	if ts := sc.TraceState(); ts.Len() > 0 {
		b = appendString(b, fSpanTraceState, ts.String())
	}
	parent := s.Parent()
	if psid := parent.SpanID(); psid.IsValid() {
		b = protowire.AppendTag(b, fSpanParentSpanID, protowire.BytesType)
		b = protowire.AppendBytes(b, psid[:])
	}
	b = appendString(b, fSpanName, s.Name())
	b = appendUint(b, fSpanKind, uint64(spanKind(s.SpanKind())))
	b = appendTime(b, fSpanStart, s.StartTime().UnixNano())
	b = appendTime(b, fSpanEnd, s.EndTime().UnixNano())
	for _, kv := range s.Attributes() {
		b = appendKeyValue(b, fSpanAttributes, kv)
	}
	b = appendUint(b, fSpanDroppedAttributes, clampUint32(s.DroppedAttributes()))
	for _, e := range s.Events() {
		size := timeSize(fEventTime, e.Time.UnixNano()) + stringSize(fEventName, e.Name) +
			keyValuesSize(fEventAttributes, e.Attributes) + uintSize(fEventDroppedAttributes, clampUint32(e.DroppedAttributeCount))
		b = protowire.AppendTag(b, fSpanEvents, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = appendTime(b, fEventTime, e.Time.UnixNano())
		b = appendString(b, fEventName, e.Name)
		for _, kv := range e.Attributes {
			b = appendKeyValue(b, fEventAttributes, kv)
		}
		b = appendUint(b, fEventDroppedAttributes, clampUint32(e.DroppedAttributeCount))
	}
	b = appendUint(b, fSpanDroppedEvents, clampUint32(s.DroppedEvents()))
	for _, l := range s.Links() {
		lid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		ts := ""
		if l.SpanContext.TraceState().Len() > 0 {
			ts = l.SpanContext.TraceState().String()
		}
		flags := linkFlags(l.SpanContext)
		size := 2*protowire.SizeTag(fLinkTraceID) + protowire.SizeBytes(len(lid)) + protowire.SizeBytes(len(lsid)) +
			stringSize(fLinkTraceState, ts) + keyValuesSize(fLinkAttributes, l.Attributes) +
			uintSize(fLinkDroppedAttributes, clampUint32(l.DroppedAttributeCount)) + protowire.SizeTag(fLinkFlags) + protowire.SizeFixed32()
		b = protowire.AppendTag(b, fSpanLinks, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = protowire.AppendTag(b, fLinkTraceID, protowire.BytesType)
		b = protowire.AppendBytes(b, lid[:])
		b = protowire.AppendTag(b, fLinkSpanID, protowire.BytesType)
		b = protowire.AppendBytes(b, lsid[:])
		b = appendString(b, fLinkTraceState, ts)
		for _, kv := range l.Attributes {
			b = appendKeyValue(b, fLinkAttributes, kv)
		}
		b = appendUint(b, fLinkDroppedAttributes, clampUint32(l.DroppedAttributeCount))
		b = protowire.AppendTag(b, fLinkFlags, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, flags)
	}
	b = appendUint(b, fSpanDroppedLinks, clampUint32(s.DroppedLinks()))
	// The status is always sent, empty when unset, as the SDK's exporter does.
	st := s.Status()
	code := statusCode(st.Code)
	b = protowire.AppendTag(b, fSpanStatus, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(stringSize(fStatusMessage, st.Description)+uintSize(fStatusCode, code)))
	b = appendString(b, fStatusMessage, st.Description)
	b = appendUint(b, fStatusCode, code)
	flags := uint32(sc.TraceFlags()) | flagHasIsRemote
	if parent.IsRemote() {
		flags |= flagIsRemote
	}
	b = protowire.AppendTag(b, fSpanFlags, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, flags)
}

// linkFlags is a link's SpanFlags: its trace flags, and whether it is remote.
func linkFlags(sc trace.SpanContext) uint32 {
	flags := uint32(sc.TraceFlags()) | flagHasIsRemote
	if sc.IsRemote() {
		flags |= flagIsRemote
	}
	return flags
}

// appendResource appends a Resource message's body: its attributes.
func appendResource(b []byte, r *resource.Resource) []byte {
	for it := r.Iter(); it.Next(); {
		b = appendKeyValue(b, fResourceAttributes, it.Attribute())
	}
	return b
}

// appendScope appends an InstrumentationScope message's body.
func appendScope(b []byte, s instrumentation.Scope) []byte {
	b = appendString(b, fScopeName, s.Name)
	b = appendString(b, fScopeVersion, s.Version)
	for it := s.Attributes.Iter(); it.Next(); {
		b = appendKeyValue(b, fScopeAttributes, it.Attribute())
	}
	return b
}

// spanKind maps the API's span kinds to the proto's (the same numbers; any
// other value is unspecified).
func spanKind(k trace.SpanKind) trace.SpanKind {
	if k < trace.SpanKindInternal || k > trace.SpanKindConsumer {
		return trace.SpanKindUnspecified
	}
	return k
}

// statusCode maps a span status to the proto's: unset 0, ok 1, error 2.
func statusCode(c codes.Code) uint64 {
	switch c {
	case codes.Ok:
		return 1
	case codes.Error:
		return 2
	}
	return 0
}

func clampUint32(v int) uint64 {
	return uint64(min(max(v, 0), math.MaxUint32))
}

// appendKeyValue appends kv as a KeyValue message in field num.
func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(keyValueSize(kv)))
	b = appendString(b, fKeyValueKey, string(kv.Key))
	return appendAnyValueField(b, fKeyValueValue, kv.Value)
}

// keyValueSize is the size of a KeyValue message's body.
func keyValueSize(kv attribute.KeyValue) int {
	n := anyValueSize(kv.Value)
	return stringSize(fKeyValueKey, string(kv.Key)) + protowire.SizeTag(fKeyValueValue) + protowire.SizeBytes(n)
}

// keyValuesSize is the size of kvs as repeated KeyValue field num.
func keyValuesSize(num protowire.Number, kvs []attribute.KeyValue) int {
	n := 0
	for _, kv := range kvs {
		n += protowire.SizeTag(num) + protowire.SizeBytes(keyValueSize(kv))
	}
	return n
}

// appendAnyValueField appends v as an AnyValue message in field num; it is
// always present (an empty value is an empty message).
func appendAnyValueField(b []byte, num protowire.Number, v attribute.Value) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	switch v.Type() {
	case attribute.BOOL, attribute.INT64, attribute.FLOAT64, attribute.STRING, attribute.EMPTY:
		b = protowire.AppendVarint(b, uint64(anyValueSize(v)))
		return appendAnyValue(b, v)
	}
	// Arrays and maps: rare, encoded apart to learn their size.
	return protowire.AppendBytes(b, appendAnyValue(nil, v))
}

// anyValueSize is the size of v's AnyValue message body.
func anyValueSize(v attribute.Value) int {
	switch v.Type() {
	case attribute.EMPTY:
		return 0
	case attribute.BOOL:
		return protowire.SizeTag(fAnyBool) + 1
	case attribute.INT64:
		return protowire.SizeTag(fAnyInt) + protowire.SizeVarint(uint64(v.AsInt64()))
	case attribute.FLOAT64:
		return protowire.SizeTag(fAnyDouble) + protowire.SizeFixed64()
	case attribute.STRING:
		return protowire.SizeTag(fAnyString) + protowire.SizeBytes(len(validUTF8(v.AsString())))
	}
	return len(appendAnyValue(nil, v))
}

// appendAnyValue appends v's AnyValue message body: one member of its
// oneof, always written (a false or zero is a value too).
func appendAnyValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.EMPTY:
		return b
	case attribute.BOOL:
		b = protowire.AppendTag(b, fAnyBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, fAnyDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
		return protowire.AppendString(b, validUTF8(v.AsString()))
	case attribute.BYTESLICE:
		b = protowire.AppendTag(b, fAnyBytes, protowire.BytesType)
		return protowire.AppendBytes(b, v.AsByteSlice())
	case attribute.BOOLSLICE:
		s := v.AsBoolSlice()
		return appendArray(b, len(s), func(i int) attribute.Value { return attribute.BoolValue(s[i]) })
	case attribute.INT64SLICE:
		s := v.AsInt64Slice()
		return appendArray(b, len(s), func(i int) attribute.Value { return attribute.Int64Value(s[i]) })
	case attribute.FLOAT64SLICE:
		s := v.AsFloat64Slice()
		return appendArray(b, len(s), func(i int) attribute.Value { return attribute.Float64Value(s[i]) })
	case attribute.STRINGSLICE:
		s := v.AsStringSlice()
		return appendArray(b, len(s), func(i int) attribute.Value { return attribute.StringValue(s[i]) })
	case attribute.SLICE:
		s := v.AsSlice()
		return appendArray(b, len(s), func(i int) attribute.Value { return s[i] })
	case attribute.MAP:
		var list []byte
		for _, kv := range v.AsMap() {
			list = appendKeyValue(list, fKVListValues, kv)
		}
		b = protowire.AppendTag(b, fAnyKVList, protowire.BytesType)
		return protowire.AppendBytes(b, list)
	}
	// A type this encoder does not know, sent as the SDK's exporter does.
	b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
	return protowire.AppendString(b, "INVALID")
}

// appendArray appends an ArrayValue of n values (at(i) the i-th) in AnyValue's array member.
func appendArray(b []byte, n int, at func(int) attribute.Value) []byte {
	var arr []byte
	for i := range n {
		arr = appendAnyValueField(arr, fArrayValues, at(i))
	}
	b = protowire.AppendTag(b, fAnyArray, protowire.BytesType)
	return protowire.AppendBytes(b, arr)
}

// appendString appends a string field, omitted when empty (proto3).
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, validUTF8(s))
}

func stringSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(validUTF8(s)))
}

// validUTF8 is s with any invalid UTF-8 replaced by U+FFFD: a protobuf
// string must be UTF-8, and a collector refuses the whole batch for one
// that is not (the SDK's exporter failed to marshal the batch instead).
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// appendUint appends a varint field (uint32 or enum), omitted when zero.
func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func uintSize(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

// appendTime appends a fixed64 time in Unix nanoseconds, omitted when zero
// (a time before 1970 is sent as zero, as the SDK's exporter does).
func appendTime(b []byte, num protowire.Number, ns int64) []byte {
	if ns <= 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, uint64(ns))
}

func timeSize(num protowire.Number, ns int64) int {
	if ns <= 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeFixed64()
}
