package rabbitmq

import (
	"errors"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/threatbus/threatbus/messages"
	"github.com/threatbus/threatbus/messages/stix"
)

// What travels besides the body. The original reads only the body; these
// let a Go bus de-duplicate and attribute what it receives.
const (
	contentType  = "application/json"
	appID        = "threatbus"
	headerOrigin = "x-threatbus-origin"
	// originUnknown is the origin of messages that carry none (the
	// original's).
	originUnknown = "rabbitmq"
)

// publishing wraps env for RabbitMQ: the body is the payload, untouched; the
// envelope id is the message-id.
func (b *Backbone) publishing(env *messages.Envelope) amqp.Publishing {
	p := amqp.Publishing{
		ContentType: contentType,
		MessageId:   env.Id,
		AppId:       appID,
		Body:        env.Payload,
	}
	if env.Origin != "" {
		p.Headers = amqp.Table{headerOrigin: env.Origin}
	}
	if b.cfg.durable {
		p.DeliveryMode = amqp.Persistent
	}
	return p
}

// Causes of a rejected delivery, as counted and logged.
const (
	causeEmpty       = "empty_body"
	causeMalformed   = "malformed_json"
	causeBadType     = "bad_type"
	causeUnknownType = "unknown_type"
)

// decode turns a delivery into an envelope. The topic and type come from the
// body's "type", never from what the sender put around it; the body must be
// one well-formed JSON object. A delivery without a message-id (from the
// original) gets a fresh id from newID.
func decode(body []byte, messageID string, headers amqp.Table, newID func() string) (*messages.Envelope, string, error) {
	if len(body) == 0 {
		return nil, causeEmpty, errors.New("empty body")
	}
	typ, _, err := stix.Peek(body)
	if err != nil {
		if errors.Is(err, stix.ErrMalformedJSON) {
			return nil, causeMalformed, err
		}
		return nil, causeBadType, err
	}
	topic, err := messages.TopicFor(typ)
	if err != nil {
		return nil, causeUnknownType, err
	}
	id := messageID
	if id == "" {
		id = newID()
	}
	origin := originUnknown
	if o, ok := headers[headerOrigin].(string); ok && o != "" {
		origin = o
	}
	return &messages.Envelope{
		Version: messages.EnvelopeVersion_ENVELOPE_VERSION_1,
		Id:      id,
		Topic:   topic,
		Type:    typ,
		Payload: body,
		Origin:  origin,
	}, "", nil
}
