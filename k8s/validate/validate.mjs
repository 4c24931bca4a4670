// Reads a JSON array of Kubernetes resources on stdin and validates each custom
// resource against its CRD's OpenAPI schema, as compiled by @kubernetes-models.
// Prints one line per resource ("ok KIND NAME" or "invalid KIND NAME: reason") and
// exits 1 if any is invalid or of a kind it does not know.
import { Kafka, KafkaNodePool, KafkaTopic } from "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1beta2";
import { PodMonitor, PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const models = {
  "kafka.strimzi.io/v1beta2/Kafka": Kafka,
  "kafka.strimzi.io/v1beta2/KafkaNodePool": KafkaNodePool,
  "kafka.strimzi.io/v1beta2/KafkaTopic": KafkaTopic,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "monitoring.coreos.com/v1/PodMonitor": PodMonitor,
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = false;
for (const doc of JSON.parse(input)) {
  const name = `${doc.kind} ${doc.metadata?.name}`;
  const Model = models[`${doc.apiVersion}/${doc.kind}`];
  if (!Model) {
    console.log(`invalid ${name}: no schema for ${doc.apiVersion}`);
    failed = true;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`ok ${name}`);
  } catch (error) {
    console.log(`invalid ${name}: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
