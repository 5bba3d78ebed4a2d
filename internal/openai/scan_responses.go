package openai

// scanResponses decodes body as ParseResponses' decoder and checkKeys
// would, in one pass, or returns false to leave it to them: the Responses
// counterpart of scanChat, with the same rules (see scan.go). The input is
// kept raw, as the decoder keeps it; its items are read afterwards either
// way. FuzzScanResponsesMatchesDecoding checks that a body it accepts
// decodes exactly as encoding/json decodes it.
func scanResponses(body []byte) (*ResponsesRequest, bool) {
	s := &jsonScanner{b: body}
	if s.next() != '{' {
		return nil, false
	}
	r := &ResponsesRequest{}
	ok := s.object(responsesShape, 1, func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "model":
			r.Model, ok = s.stringValue()
		case "previous_response_id":
			r.PreviousResponseID, ok = s.stringValue()
		case "instructions":
			ok = s.optString(&r.Instructions)
		case "stream":
			r.Stream, ok = s.boolValue()
		case "background":
			r.Background, ok = s.boolValue()
		case "store":
			ok = s.optBool(&r.Store)
		case "max_output_tokens":
			ok = s.intValue(&r.MaxOutputTokens)
		case "temperature":
			ok = s.floatValue(&r.Temperature)
		default: // "input", "tools", "conversation": kept raw
			start := s.i
			if ok = s.value(responsesShape.fields[string(key)], 1); ok {
				switch string(key) {
				case "input":
					r.Input = s.raw(start)
				case "tools":
					r.Tools = s.raw(start)
				default:
					r.Conversation = s.raw(start)
				}
			}
		}
		return ok
	})
	if !ok || !s.end() {
		return nil, false
	}
	return r, true
}

// optString reads a string or null (which leaves p as it is) into p.
func (s *jsonScanner) optString(p **string) bool {
	if s.b[s.i] == 'n' {
		return s.literal("null")
	}
	v, ok := s.stringValue()
	if ok {
		*p = &v
	}
	return ok
}

// optBool reads true, false or null (which leaves p as it is) into p.
func (s *jsonScanner) optBool(p **bool) bool {
	if s.b[s.i] == 'n' {
		return s.literal("null")
	}
	v, ok := s.boolValue()
	if ok {
		*p = &v
	}
	return ok
}
