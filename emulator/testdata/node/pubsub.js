// Drives @google-cloud/pubsub against the emulator at PUBSUB_EMULATOR_HOST:
// creates a topic and a subscription, publishes one message, receives it,
// acks it; then creates an Avro schema and a topic that validates JSON
// against it, publishes a conforming message (received with the schema
// attributes the service adds) and a non-conforming one (refused); and
// publishes to the schema topic the emulator was provisioned with
// (--config). It prints one JSON line describing what it saw.
'use strict';
const {PubSub, Schema, SchemaTypes, Encodings} = require('@google-cloud/pubsub');

const orderSchema = JSON.stringify({
  type: 'record',
  name: 'Order',
  fields: [
    {name: 'id', type: 'string'},
    {name: 'qty', type: 'int'},
  ],
});

function receiveOne(sub) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no message within 20s')), 20000);
    sub.on('message', m => {
      clearTimeout(timer);
      m.ack();
      resolve(m);
    });
    sub.on('error', reject);
  });
}

// refusal publishes data and returns the error's code and message, or
// null when the publish was accepted.
async function refusal(topic, data) {
  try {
    await topic.publishMessage({data: Buffer.from(data)});
    return null;
  } catch (err) {
    return {code: err.code, message: err.message};
  }
}

async function main() {
  const pubsub = new PubSub({projectId: 'courier-node'});
  const suffix = `${process.pid}-${Date.now()}`;
  const [topic] = await pubsub.createTopic(`node-topic-${suffix}`);
  const [sub] = await topic.createSubscription(`node-sub-${suffix}`);
  const published = await topic.publishMessage({
    data: Buffer.from('hello from node'),
    attributes: {lang: 'js'},
  });
  const msg = await receiveOne(sub);
  await sub.close();

  // A schema topic made through the Node client.
  const schema = await pubsub.createSchema(`node-schema-${suffix}`, SchemaTypes.Avro, orderSchema);
  const schemaName = await schema.getName();
  const [schemaTopic] = await pubsub.createTopic({
    name: `node-orders-${suffix}`,
    schemaSettings: {schema: schemaName, encoding: Encodings.Json},
  });
  const [schemaSub] = await schemaTopic.createSubscription(`node-orders-sub-${suffix}`);
  const goodId = await schemaTopic.publishMessage({data: Buffer.from(JSON.stringify({id: 'o1', qty: 2}))});
  const bad = await refusal(schemaTopic, JSON.stringify({id: 'o1', qty: 'two'}));
  const good = await receiveOne(schemaSub);
  await schemaSub.close();

  // The schema topic the emulator was started with (--config).
  const provisioned = pubsub.topic('projects/courier-config/topics/orders');
  const provisionedGood = await refusal(provisioned, JSON.stringify({id: 'p1', qty: 1}));
  const provisionedBad = await refusal(provisioned, '{"id": 7}');

  console.log(JSON.stringify({
    published,
    id: msg.id,
    data: msg.data.toString(),
    attributes: msg.attributes,
    topic: topic.name,
    subscription: sub.name,
    schema: {
      name: schemaName,
      goodId,
      received: {id: good.id, attributes: good.attributes, metadata: Schema.metadataFromMessage(good.attributes)},
      bad,
      provisionedGood,
      provisionedBad,
    },
  }));
  await pubsub.close();
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
