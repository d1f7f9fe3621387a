// The Kubernetes manifests (k8s/) as an operator applies them. No cluster runs here, so they are
// checked statically: every object against the Kubernetes API schemas (kubernetes-models) or
// KEDA's CRDs (@kubernetes-models/keda), and what a schema cannot see — the references between
// objects and into nixcas itself (service names, NATS roles, consumers, configuration
// variables, health ports) — by the tests below. What stays unchecked: fields a schema does not
// know are ignored by its validator (as by the API server without strict field validation),
// and the NATS chart values are checked against what the chart documents, not rendered by Helm.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";
import type { ILabelSelector } from "@kubernetes-models/apimachinery/apis/meta/v1/LabelSelector";
import type { IIoK8sApimachineryPkgApisMetaV1ObjectMeta as IObjectMeta } from "@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta";
import { ScaledObject, type IScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication, type ITriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";
import { Deployment, type IDeployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { Job, type IJob } from "kubernetes-models/batch/v1/Job";
import { Ingress, type IIngress } from "kubernetes-models/networking.k8s.io/v1/Ingress";
import { NetworkPolicy, type INetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { PodDisruptionBudget, type IPodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap, type IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IContainer } from "kubernetes-models/v1/Container";
import { Namespace } from "kubernetes-models/v1/Namespace";
import type { IPodTemplateSpec } from "kubernetes-models/v1/PodTemplateSpec";
import { Secret, type ISecret } from "kubernetes-models/v1/Secret";
import { Service, type IService } from "kubernetes-models/v1/Service";
import { SERVICE_NAMES } from "../../services/registry.ts";
import { loadConfig } from "../../shared/config.ts";
import { NATS_ROLES } from "../../shared/nats/roles.ts";
import { INGEST_LANES } from "../../shared/nats/subjects.ts";
import { STREAMS } from "../../shared/nats/topology.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const K8S = join(ROOT, "k8s");

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: IObjectMeta & { name: string };
  /** Where it came from, for messages. */
  file: string;
}

interface Validating {
  validate(): void;
}

/** The kinds k8s/ may use, each with its schema. A kind not listed here fails the test. */
const MODELS: Record<string, new (data: never) => Validating> = {
  "v1/Namespace": Namespace,
  "v1/ConfigMap": ConfigMap,
  "v1/Secret": Secret,
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
  "batch/v1/Job": Job,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "networking.k8s.io/v1/Ingress": Ingress,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "keda.sh/v1alpha1/TriggerAuthentication": TriggerAuthentication,
};

async function loadManifests(file: string): Promise<Manifest[]> {
  const docs = parseAllDocuments(await readFile(join(K8S, file), "utf8"));
  return docs.map((doc, i) => {
    assert.deepEqual(doc.errors, [], `${file}: document ${i + 1} is not valid YAML`);
    const object = doc.toJS() as Manifest | null;
    assert.ok(object?.apiVersion && object.kind && object.metadata?.name, `${file}: document ${i + 1} lacks apiVersion, kind or metadata.name`);
    return { ...object, file };
  });
}

interface Kustomization {
  namespace: string;
  resources: string[];
  images: { name: string; newName: string; newTag: string }[];
}

const kustomization = parse(await readFile(join(K8S, "kustomization.yaml"), "utf8")) as Kustomization;
const applied = (await Promise.all(kustomization.resources.map(loadManifests))).flat();
const exampleFiles = (await readdir(join(K8S, "examples"))).filter((f) => f.endsWith(".yaml")).map((f) => `examples/${f}`);
const examples = (await Promise.all(exampleFiles.map(loadManifests))).flat();
const natsValues = parse(await readFile(join(K8S, "nats-values.yaml"), "utf8")) as NatsValues;
const packageVersion = (JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

function withoutFile<T extends Manifest>(m: T): Omit<T, "file"> {
  const { file: _file, ...object } = m;
  return object;
}

function ofKind<T>(manifests: Manifest[], kind: string): (T & Manifest)[] {
  return manifests.filter((m) => m.kind === kind) as (T & Manifest)[];
}

function named<T extends Manifest>(list: T[], name: string): T {
  const found = list.find((m) => m.metadata.name === name);
  assert.ok(found, `no ${name} among ${list.map((m) => m.metadata.name).join(", ")}`);
  return found;
}

const deployments = ofKind<IDeployment>(applied, "Deployment");
const jobs = ofKind<IJob>(applied, "Job");
const configMaps = ofKind<IConfigMap>(applied, "ConfigMap");
const exampleSecrets = ofKind<ISecret>(examples, "Secret");
const policies = ofKind<INetworkPolicy>(applied, "NetworkPolicy");
const nixcasConfig = named(configMaps, "nixcas-config").data!;

/** A workload's pod template with the name of what runs it (a service, or `setup`). */
interface Workload {
  component: string;
  owner: Manifest;
  template: IPodTemplateSpec;
}

const workloads: Workload[] = [
  ...deployments.map((d) => ({ owner: d, template: d.spec!.template })),
  ...jobs.map((j) => ({ owner: j, template: j.spec!.template })),
].map((w) => ({ ...w, component: w.template.metadata?.labels?.["app.kubernetes.io/component"] ?? "" }));

function containersOf(w: Workload): IContainer[] {
  return w.template.spec!.containers;
}

/** The labels of the NATS chart's server pods for the release `nats` (the chart's nats.selectorLabels). */
const NATS_POD_LABELS = { "app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats", "app.kubernetes.io/component": "nats" };

/** Does a Kubernetes label selector select these labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors)? */
function selects(selector: ILabelSelector, labels: Record<string, string>): boolean {
  const byLabel = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  const byExpression = (selector.matchExpressions ?? []).every((e) => {
    const has = Object.hasOwn(labels, e.key);
    switch (e.operator) {
      case "In":
        return has && e.values!.includes(labels[e.key]!);
      case "NotIn":
        return !has || !e.values!.includes(labels[e.key]!);
      case "Exists":
        return has;
      case "DoesNotExist":
        return !has;
      default:
        throw new Error(`unknown selector operator ${e.operator}`);
    }
  });
  return byLabel && byExpression;
}

/** Kubernetes quantities (cpu `250m`, `2`; memory `512Mi`, `2Gi`) as numbers. */
function quantity(value: string | number): number {
  const m = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G)?$/.exec(String(value));
  assert.ok(m, `not a quantity: ${value}`);
  const factor = { m: 1e-3, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9 }[m[2] ?? ""] ?? 1;
  return Number(m[1]) * factor;
}

test("kustomization.yaml lists every file under k8s/base, and only files that exist", async () => {
  const baseFiles = (await readdir(join(K8S, "base"))).map((f) => `base/${f}`).sort();
  assert.deepEqual([...kustomization.resources].sort(), baseFiles);
  assert.equal(kustomization.namespace, "nixcas");
  assert.ok(applied.some((m) => m.kind === "Namespace" && m.metadata.name === kustomization.namespace));
});

test("every manifest is valid against the Kubernetes API schema (or KEDA's CRD) of its kind", () => {
  for (const m of [...applied, ...examples]) {
    const Model = MODELS[`${m.apiVersion}/${m.kind}`];
    assert.ok(Model, `${m.file}: ${m.apiVersion} ${m.kind} ${m.metadata.name}: a kind this test has no schema for`);
    assert.doesNotThrow(() => new Model(withoutFile(m) as never).validate(), `${m.file}: ${m.kind} ${m.metadata.name}`);
    // kustomize sets the namespace; a hard-coded other one would split the deployment.
    assert.ok(m.metadata.namespace === undefined || m.metadata.namespace === kustomization.namespace, `${m.file}: ${m.metadata.name}`);
  }
  const keys = [...applied, ...examples].map((m) => `${m.kind}/${m.metadata.name}`);
  assert.deepEqual(keys, [...new Set(keys)], "two objects of one kind share a name");
});

test("the schema validation is real: it rejects a broken Deployment and a broken ScaledObject", () => {
  const gateway = withoutFile(named(deployments, "nixcas-gateway"));
  const broken = structuredClone(gateway);
  (broken.spec!.template.spec!.containers[0]!.ports![0] as { containerPort: unknown }).containerPort = "8080";
  assert.throws(() => new Deployment(broken).validate(), /containerPort must be integer/);
  const scaled = withoutFile(named(ofKind<IScaledObject>(applied, "ScaledObject"), "nixcas-chunker"));
  const noTarget = { ...scaled, spec: { ...scaled.spec!, scaleTargetRef: undefined } } as unknown as IScaledObject;
  assert.throws(() => new ScaledObject(noTarget).validate(), /scaleTargetRef/);
});

test("one Deployment per nixcas service, running that service, and a setup Job with a TTL running `nixcas setup`", () => {
  const services = workloads.filter((w) => w.owner.kind === "Deployment");
  assert.deepEqual(services.map((w) => w.component).sort(), [...SERVICE_NAMES].sort());
  for (const w of services) {
    assert.equal(w.owner.metadata.name, `nixcas-${w.component}`);
    assert.deepEqual(containersOf(w)[0]!.args, ["service", w.component]);
    assert.deepEqual((w.owner as IDeployment & Manifest).spec!.selector.matchLabels, { "app.kubernetes.io/name": "nixcas", "app.kubernetes.io/component": w.component });
  }
  const setup = named(jobs, "nixcas-setup");
  assert.ok((setup.spec!.ttlSecondsAfterFinished ?? 0) > 0, "the setup Job must clean itself up");
  assert.ok(["OnFailure", "Never"].includes(setup.spec!.template.spec!.restartPolicy!));
  assert.deepEqual(setup.spec!.template.spec!.containers[0]!.args, ["setup"]);
});

test("every container runs the pinned release image that kustomization.yaml rewrites", () => {
  assert.equal(kustomization.images.length, 1);
  const image = kustomization.images[0]!;
  assert.equal(image.newTag, packageVersion, "the image tag is the release in package.json");
  for (const w of workloads) {
    for (const c of containersOf(w)) {
      assert.equal(c.image, `${image.name}:${packageVersion}`, `${w.owner.metadata.name}/${c.name}`);
      // A registry host (a dot or a port before the first slash), a tag, never `latest`.
      assert.match(c.image!, /^[^/]+[.:][^/]*\/[^:]+:[\w.-]+$/);
      assert.doesNotMatch(c.image!, /:latest$/);
    }
  }
});

test("every pod runs as non-root, read-only, without privilege escalation or capabilities, under seccomp", () => {
  for (const w of workloads) {
    const pod = w.template.spec!;
    const where = w.owner.metadata.name;
    assert.equal(pod.securityContext?.runAsNonRoot, true, where);
    assert.ok((pod.securityContext?.runAsUser ?? 0) > 0, where);
    // The mounted creds are 0440: readable through the group fsGroup sets.
    assert.equal(pod.securityContext?.fsGroup, pod.securityContext?.runAsUser, where);
    assert.equal(pod.securityContext?.seccompProfile?.type, "RuntimeDefault", where);
    assert.equal(pod.automountServiceAccountToken, false, `${where}: no pod needs the Kubernetes API`);
    for (const c of containersOf(w)) {
      assert.equal(c.securityContext?.allowPrivilegeEscalation, false, where);
      assert.equal(c.securityContext?.readOnlyRootFilesystem, true, where);
      assert.deepEqual(c.securityContext?.capabilities?.drop, ["ALL"], where);
      assert.equal(c.securityContext?.capabilities?.add, undefined, where);
    }
  }
});

test("every container has CPU and memory requests and limits, limits at least the requests", () => {
  for (const w of workloads) {
    for (const c of containersOf(w)) {
      for (const resource of ["cpu", "memory"]) {
        const request = c.resources?.requests?.[resource];
        const limit = c.resources?.limits?.[resource];
        assert.ok(request !== undefined && limit !== undefined, `${w.owner.metadata.name}: ${resource} request and limit`);
        assert.ok(quantity(limit) >= quantity(request), `${w.owner.metadata.name}: ${resource} limit ${limit} < request ${request}`);
      }
    }
  }
});

test("probes hit /readyz and /healthz, and Prometheus /metrics, on the port nixcas serves them on", () => {
  const healthPort = loadConfig(nixcasConfig).healthPort;
  assert.ok(healthPort !== null, "NIXCAS_HEALTH_PORT must be set: without it a lone service serves no probes");
  for (const w of workloads.filter((w) => w.owner.kind === "Deployment")) {
    const c = containersOf(w)[0]!;
    // The configuration the process will parse: the ConfigMap, then the container's own values.
    assert.deepEqual(c.envFrom?.[0], { configMapRef: { name: "nixcas-config" } }, w.owner.metadata.name);
    const env = { ...nixcasConfig, ...Object.fromEntries((c.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!])) };
    const config = loadConfig(env);
    // The gateway answers on its own HTTP port; every other service on NIXCAS_HEALTH_PORT.
    const expected = w.component === "gateway" ? config.http.port : config.healthPort;
    // /metrics is served where the probes are: that is where Prometheus is told to scrape.
    assert.equal(Number(w.template.metadata!.annotations?.["prometheus.io/port"]), expected, `${w.owner.metadata.name}: prometheus.io/port`);
    for (const [probe, path] of [[c.readinessProbe, "/readyz"], [c.livenessProbe, "/healthz"]] as const) {
      assert.equal(probe?.httpGet?.path, path, `${w.owner.metadata.name}: ${path}`);
      const port = probe!.httpGet!.port;
      const resolved = typeof port === "number" ? port : c.ports?.find((p) => p.name === port)?.containerPort;
      assert.equal(resolved, expected, `${w.owner.metadata.name}: ${path} probes port ${port}`);
    }
  }
});

test("each pod mounts only its own NATS role's creds, at NATS_CREDS", () => {
  const credsPath = nixcasConfig.NATS_CREDS!;
  for (const w of workloads) {
    const role = w.component === "setup" ? "admin" : w.component;
    assert.ok((NATS_ROLES as readonly string[]).includes(role), `${role} is not a NATS role`);
    const volumes = w.template.spec!.volumes!.filter((v) => v.secret?.secretName === "nixcas-nats-creds");
    assert.equal(volumes.length, 1, w.owner.metadata.name);
    const items = volumes[0]!.secret!.items!;
    assert.deepEqual(items.map((i) => i.key), [`${role}.creds`], `${w.owner.metadata.name} mounts ${role}'s creds only`);
    const mount = containersOf(w)[0]!.volumeMounts!.find((m) => m.name === volumes[0]!.name)!;
    assert.equal(posix.join(mount.mountPath, items[0]!.path), credsPath);
    assert.equal(mount.readOnly, true);
  }
});

test("every secret and ConfigMap a pod, autoscaler or Ingress refers to is defined or shown in examples/secrets.yaml", () => {
  const secretKeys = new Map(exampleSecrets.map((s) => [s.metadata.name, new Set(Object.keys({ ...s.data, ...s.stringData }))]));
  const needSecretKey = (name: string, key: string | null, where: string) => {
    assert.ok(secretKeys.has(name), `${where}: secret ${name} is neither defined nor shown in k8s/examples/secrets.yaml`);
    if (key !== null) assert.ok(secretKeys.get(name)!.has(key), `${where}: secret ${name} has no key ${key} in k8s/examples/secrets.yaml`);
  };
  const configMapNames = new Set(configMaps.map((c) => c.metadata.name));
  for (const w of workloads) {
    const where = w.owner.metadata.name;
    const pod = w.template.spec!;
    for (const v of pod.volumes ?? []) {
      if (v.secret) for (const item of v.secret.items ?? [{ key: null }]) needSecretKey(v.secret.secretName!, item.key, where);
      if (v.configMap) assert.ok(configMapNames.has(v.configMap.name!), `${where}: ConfigMap ${v.configMap.name}`);
    }
    for (const c of pod.containers) {
      for (const mount of c.volumeMounts ?? []) assert.ok(pod.volumes?.some((v) => v.name === mount.name), `${where}: volume ${mount.name}`);
      for (const from of c.envFrom ?? []) {
        if (from.secretRef) needSecretKey(from.secretRef.name!, null, where);
        if (from.configMapRef) assert.ok(configMapNames.has(from.configMapRef.name!), `${where}: ConfigMap ${from.configMapRef.name}`);
      }
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (ref) needSecretKey(ref.name!, ref.key, where);
      }
    }
  }
  for (const auth of ofKind<ITriggerAuthentication>(applied, "TriggerAuthentication")) {
    for (const ref of auth.spec!.secretTargetRef ?? []) needSecretKey(ref.name, ref.key, auth.metadata.name);
  }
  for (const volume of natsPodVolumes()) needSecretKey(volume.secret.secretName, volume.secret.items[0]!.key, "nats-values.yaml");
  for (const ingress of ofKind<IIngress>(examples, "Ingress")) {
    // The TLS secret is cert-manager's to make, from the annotation.
    assert.ok(ingress.metadata.annotations?.["cert-manager.io/cluster-issuer"] || ingress.spec!.tls!.every((t) => secretKeys.has(t.secretName!)));
  }
});

test("the example secrets hold placeholders only", () => {
  for (const s of exampleSecrets) {
    assert.equal(s.data, undefined, `${s.metadata.name}: base64 data could hide a real value`);
    for (const [key, value] of Object.entries(s.stringData ?? {})) assert.match(value, /^REPLACE-ME/, `${s.metadata.name}/${key}`);
  }
  // Every role a pod mounts is one `nixcas nats-auth init` writes a creds file for.
  const creds = Object.keys(named(exampleSecrets, "nixcas-nats-creds").stringData!);
  for (const key of creds) assert.ok((NATS_ROLES as readonly string[]).includes(key.replace(/\.creds$/, "")), key);
});

test("every Deployment has a PodDisruptionBudget over exactly its pods", () => {
  const budgets = ofKind<IPodDisruptionBudget>(applied, "PodDisruptionBudget");
  for (const d of deployments) {
    const budget = named(budgets, d.metadata.name);
    assert.deepEqual(budget.spec!.selector, d.spec!.selector);
    // maxUnavailable, not minAvailable: a budget must never block draining a node outright.
    assert.equal(budget.spec!.maxUnavailable, 1);
  }
  assert.equal(budgets.length, deployments.length);
});

test("NetworkPolicies: only the gateway accepts connections (and Prometheus its scrapes); services reach DNS, NATS and (cold tier users) S3 only", () => {
  const appliesTo = (labels: Record<string, string>, type: "Ingress" | "Egress") =>
    policies.filter((p) => p.spec!.policyTypes!.includes(type) && selects(p.spec!.podSelector ?? {}, labels));
  const describePeer = (peer: NonNullable<NonNullable<INetworkPolicy["spec"]>["egress"]>[number]["to"]) =>
    (peer ?? []).map((to) => {
      if (to.ipBlock) return `ip ${to.ipBlock.cidr}`;
      if (to.namespaceSelector && to.podSelector?.matchLabels?.["k8s-app"] === "kube-dns") return "dns";
      if (to.podSelector && !to.namespaceSelector && selects(to.podSelector, NATS_POD_LABELS)) return "nats";
      return `other ${JSON.stringify(to)}`;
    });
  const S3_USERS = new Set(["gateway", "indexer", "tierer", "setup"]);
  const healthPort = loadConfig(nixcasConfig).healthPort;
  for (const w of workloads) {
    const labels = w.template.metadata!.labels!;
    // Default deny in both directions for every nixcas pod.
    assert.ok(appliesTo(labels, "Ingress").some((p) => !p.spec!.ingress), `${w.component}: no default-deny ingress`);
    assert.ok(appliesTo(labels, "Egress").some((p) => !p.spec!.egress), `${w.component}: no default-deny egress`);
    const ingress = appliesTo(labels, "Ingress").flatMap((p) => p.spec!.ingress ?? []);
    // From anywhere: the gateway's HTTP port only (the Ingress controller, in-cluster clients).
    const open = ingress.filter((r) => r.from === undefined).flatMap((r) => r.ports!.map((p) => p.port));
    const httpPort = containersOf(w)[0]!.ports?.find((p) => p.name === "http")?.containerPort;
    assert.deepEqual(open, w.component === "gateway" ? [httpPort] : [], `${w.component}: ports open to anyone`);
    // Else only Prometheus's namespace, only to the health port (where /metrics is).
    for (const rule of ingress.filter((r) => r.from !== undefined)) {
      assert.deepEqual(rule.from, [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }], w.component);
      assert.deepEqual(rule.ports!.map((p) => p.port), [healthPort], w.component);
    }
    const egress = appliesTo(labels, "Egress")
      .flatMap((p) => p.spec!.egress ?? [])
      .flatMap((r) => describePeer(r.to).flatMap((peer) => r.ports!.map((p) => `${peer} ${p.protocol}/${p.port}`)))
      .sort();
    const expected = ["dns TCP/53", "dns UDP/53", "nats TCP/4222", ...(S3_USERS.has(w.component) ? ["ip 0.0.0.0/0 TCP/443"] : [])].sort();
    assert.deepEqual(egress, expected, w.component);
  }
  // The NATS servers: clients from nixcas pods only, routes between themselves, /jsz for KEDA.
  const nats = policies.filter((p) => selects(p.spec!.podSelector ?? {}, NATS_POD_LABELS));
  assert.equal(nats.length, 1);
  const rules = nats[0]!.spec!.ingress!;
  const clientRule = rules.find((r) => r.ports!.some((p) => p.port === 4222))!;
  for (const w of workloads) assert.ok(clientRule.from!.some((f) => f.podSelector && selects(f.podSelector, w.template.metadata!.labels!)), `${w.component} may not reach NATS`);
  assert.ok(rules.find((r) => r.ports!.some((p) => p.port === 6222))!.from!.some((f) => f.podSelector && selects(f.podSelector, NATS_POD_LABELS)));
  assert.deepEqual(rules.find((r) => r.ports!.some((p) => p.port === 8222))!.from, [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "keda" } } }]);
});

test("the gateway Service and the example Ingress route to the gateway's HTTP port, with TLS", () => {
  const service = named(ofKind<IService>(applied, "Service"), "nixcas-gateway");
  const gateway = workloads.find((w) => w.component === "gateway")!;
  for (const w of workloads) assert.equal(selects({ matchLabels: service.spec!.selector }, w.template.metadata!.labels!), w === gateway, w.component);
  const servicePort = service.spec!.ports![0]!;
  assert.ok(containersOf(gateway)[0]!.ports!.some((p) => p.name === servicePort.targetPort));
  const ingress = named(ofKind<IIngress>(examples, "Ingress"), "nixcas-gateway");
  const backend = ingress.spec!.rules![0]!.http!.paths[0]!.backend.service!;
  assert.equal(backend.name, service.metadata.name);
  assert.equal(backend.port!.name, servicePort.name);
  const hosts = ingress.spec!.rules!.map((r) => r.host);
  assert.deepEqual(ingress.spec!.tls!.flatMap((t) => t.hosts), hosts, "every host is served over TLS");
});

test("autoscaling: the chunker on its INGEST consumers' backlog (KEDA), the gateway on CPU", () => {
  const scaled = named(ofKind<IScaledObject>(applied, "ScaledObject"), "nixcas-chunker");
  assert.equal(named(deployments, scaled.spec!.scaleTargetRef.name).metadata.name, "nixcas-chunker");
  const triggers = scaled.spec!.triggers;
  assert.ok(triggers.every((t) => t.type === "nats-jetstream"));
  assert.ok(triggers.every((t) => t.metadata.stream === STREAMS.ingest));
  assert.deepEqual(triggers.map((t) => t.metadata.consumer).sort(), Object.values(INGEST_LANES).map((l) => l.consumer).sort());
  const auths = ofKind<ITriggerAuthentication>(applied, "TriggerAuthentication");
  for (const t of triggers) {
    assert.ok(Number(t.metadata.lagThreshold) > 0);
    // Clustered NATS: KEDA must reach each node, through the chart's headless Service.
    assert.equal(t.metadata.natsServerMonitoringEndpoint, `nats-headless.${kustomization.namespace}.svc.cluster.local:${natsValues.config.monitor.port ?? 8222}`);
    // In operator mode the monitoring endpoint names the account by its public key.
    assert.ok(named(auths, t.authenticationRef!.name).spec!.secretTargetRef!.some((r) => r.parameter === "account"));
  }
  const hpas = ofKind<IHorizontalPodAutoscaler>(applied, "HorizontalPodAutoscaler");
  assert.equal(hpas.length, 1, "the chunker's HPA is KEDA's; only the gateway has one of its own");
  assert.deepEqual(hpas[0]!.spec!.scaleTargetRef, { apiVersion: "apps/v1", kind: "Deployment", name: "nixcas-gateway" });
  assert.deepEqual(hpas[0]!.spec!.metrics!.map((m) => m.resource?.name), ["cpu"]);
  assert.ok(hpas[0]!.spec!.minReplicas! >= 2, "one gateway down must not take the cache down");
});

interface NatsSecretVolume {
  name: string;
  secret: { secretName: string; items: { key: string; path: string }[] };
}

interface NatsValues {
  config: {
    cluster: { enabled: boolean; replicas: number };
    jetstream: { enabled: boolean; fileStore: { pvc: { size: string } } };
    monitor: { enabled: boolean; port?: number };
    merge: Record<string, string>;
  };
  container: { patch: { op: string; path: string; value: { name: string; mountPath: string } }[] };
  podTemplate: { patch: { op: string; path: string; value: NatsSecretVolume }[] };
}

function natsPodVolumes(): NatsSecretVolume[] {
  return natsValues.podTemplate.patch.filter((p) => p.op === "add" && p.path === "/spec/volumes/-").map((p) => p.value);
}

test("NATS chart values: a 3-node JetStream cluster that includes the nixcas auth.conf from its secret", () => {
  const { config } = natsValues;
  assert.equal(config.cluster.enabled, true);
  assert.equal(config.cluster.replicas, 3);
  assert.equal(Number(nixcasConfig.NIXCAS_REPLICAS), config.cluster.replicas, "streams at R3 need three nodes");
  assert.equal(config.jetstream.enabled, true);
  assert.equal(config.monitor.enabled, true, "KEDA reads /jsz");
  // The chart renders keys ending in `$include` as include directives, relative to its config
  // file /etc/nats-config/nats.conf.
  const include = config.merge["$include"]!;
  const included = posix.join("/etc/nats-config", include);
  const mount = natsValues.container.patch.find((p) => p.path === "/volumeMounts/-" && included.startsWith(`${p.value.mountPath}/`))!;
  assert.ok(mount, `no volume mounted where ${included} is`);
  assert.ok(mount.value.mountPath.startsWith("/etc/"), "under /etc/ the chart's config reloader watches it");
  const volume = natsPodVolumes().find((v) => v.name === mount.value.name)!;
  assert.deepEqual(volume.secret.items, [{ key: "auth.conf", path: posix.basename(included) }]);
  // nixcas reaches the release `nats` on the client port.
  assert.equal(nixcasConfig.NATS_URL, "nats://nats:4222");
});

test("the README's \"Deploy on Kubernetes\" section gives the commands for these files", async () => {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const section = /^## Deploy on Kubernetes\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1];
  assert.ok(section, "README has no section \"Deploy on Kubernetes\"");
  for (const command of ["nixcas nats-auth init", "helm install nats nats/nats", "-f k8s/nats-values.yaml", "kubectl apply -k k8s/", "nixcas-nats-creds", "nixcas-signing-key", "nixcas-nats-account"]) {
    assert.ok(section.includes(command), `the section does not mention ${command}`);
  }
});
