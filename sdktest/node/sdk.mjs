// The openai npm package against a running llmgate node: responses.create
// (streamed and not) and a chat call through the Azure v1 base URL. Exits
// non-zero on the first failure. LLMGATE_URL and LLMGATE_KEY name the node.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const base = process.env.LLMGATE_URL;
const apiKey = process.env.LLMGATE_KEY;
assert.ok(base && apiKey, 'LLMGATE_URL and LLMGATE_KEY must be set');

const client = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0 });

const resp = await client.responses.create({ model: 'gpt-4o', input: 'Name a mountain.' });
assert.equal(resp.status, 'completed');
assert.ok(resp.output_text.length > 0, 'output_text is empty');
assert.ok(resp.usage.output_tokens > 0, 'no usage');
const again = await client.responses.retrieve(resp.id);
assert.equal(again.output_text, resp.output_text);

const stream = await client.responses.create({ model: 'gpt-4o', input: 'Name a sea.', stream: true });
let text = '';
let completed;
for await (const ev of stream) {
  if (ev.type === 'response.output_text.delta') text += ev.delta;
  if (ev.type === 'response.completed') completed = ev.response;
}
assert.ok(completed, 'no response.completed event');
assert.ok(text.length > 0, 'no text deltas');
assert.equal(completed.output_text ?? completed.output[0].content[0].text, text);

const azure = new OpenAI({ baseURL: `${base}/openai/v1`, apiKey, maxRetries: 0 });
const chat = await azure.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] });
assert.ok(chat.choices[0].message.content.length > 0, 'empty chat answer');

console.log(`openai npm ${OpenAI.VERSION ?? ''}: responses.create (stream and not), retrieve, Azure v1 chat: ok`);
