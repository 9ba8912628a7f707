//! A small in-memory Kubernetes API server: get, list (namespaced and across namespaces), create,
//! replace (with resourceVersion checks), server-side apply (deep merge), merge and JSON patches,
//! status subresources, delete with finalizers and deletionTimestamp. Every request is logged,
//! and every object written is validated as the API server would (`schema`): the CRD schemas for
//! Cairn's kinds, the Kubernetes OpenAPI for the others. A write that fails is refused (500 for a
//! field the schema does not declare, as server-side apply answers; 422 otherwise) and recorded in
//! `rejected`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// A write refused by validation: `(method, path, problems)`.
pub type Rejected = (String, String, Vec<String>);

/// The fake server's state.
#[derive(Clone, Default)]
pub struct FakeKube {
    /// Objects by `collection path/name` (e.g. `/api/v1/namespaces/ns/secrets/x`).
    pub objects: Arc<Mutex<BTreeMap<String, Value>>>,
    /// `(method, path)` of every request.
    pub log: Arc<Mutex<Vec<(String, String)>>>,
    /// Writes refused by validation.
    pub rejected: Arc<Mutex<Vec<Rejected>>>,
    rv: Arc<Mutex<u64>>,
    client: Arc<Mutex<Option<Client>>>,
}

struct Target {
    /// Collection path without namespace (e.g. `/api/v1/secrets`) for cross-namespace lists.
    collection_all: String,
    /// Namespaced collection path.
    collection: String,
    name: Option<String>,
    status: bool,
}

fn parse(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match *segs.first()? {
        "api" => (format!("/api/{}", segs.get(1)?), &segs[2..]),
        "apis" => (
            format!("/apis/{}/{}", segs.get(1)?, segs.get(2)?),
            &segs[3..],
        ),
        _ => return None,
    };
    match rest {
        ["namespaces", ns, res, tail @ ..] => Some(Target {
            collection_all: format!("{prefix}/{res}"),
            collection: format!("{prefix}/namespaces/{ns}/{res}"),
            name: tail.first().map(|s| s.to_string()),
            status: tail.get(1) == Some(&"status"),
        }),
        [res] => Some(Target {
            collection_all: format!("{prefix}/{res}"),
            collection: format!("{prefix}/{res}"),
            name: None,
            status: false,
        }),
        // A cluster-scoped object (`/api/v1/namespaces/NAME`).
        [res, name] => Some(Target {
            collection_all: format!("{prefix}/{res}"),
            collection: format!("{prefix}/{res}"),
            name: Some(name.to_string()),
            status: false,
        }),
        _ => None,
    }
}

/// `/apis/g/v/namespaces/ns/res` → `/apis/g/v/res`.
fn strip_ns(coll: &str) -> String {
    match coll.split_once("/namespaces/") {
        Some((prefix, rest)) => match rest.split_once('/') {
            Some((_, res)) => format!("{prefix}/{res}"),
            None => coll.to_string(),
        },
        None => coll.to_string(),
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn deep_merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    deep_merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

impl FakeKube {
    /// A new empty server.
    pub fn new() -> Self {
        Self::default()
    }

    /// A kube `Client` whose requests this server answers (one per server).
    pub fn client(&self) -> Client {
        let mut c = self.client.lock().unwrap();
        if let Some(c) = c.as_ref() {
            return c.clone();
        }
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let this = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (code, body) = this.handle(req).await;
                send.send_response(
                    Response::builder()
                        .status(StatusCode::from_u16(code).unwrap())
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
        });
        let client = Client::new(service, "default");
        *c = Some(client.clone());
        client
    }

    fn next_rv(&self) -> String {
        let mut rv = self.rv.lock().unwrap();
        *rv += 1;
        rv.to_string()
    }

    /// Puts an object as if created through the API (fills uid, resourceVersion, generation).
    pub fn insert(&self, path_collection: &str, mut obj: Value) -> Value {
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        self.stamp_new(&mut obj);
        self.objects
            .lock()
            .unwrap()
            .insert(format!("{path_collection}/{name}"), obj.clone());
        obj
    }

    fn stamp_new(&self, obj: &mut Value) {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        obj["metadata"]["uid"] = json!(format!("uid-{name}-{}", self.next_rv()));
        obj["metadata"]["resourceVersion"] = json!(self.next_rv());
        obj["metadata"]["generation"] = json!(1);
        obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    }

    /// The object at `path` (collection path + `/name`).
    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    /// Changes an object in place (e.g. to set a StatefulSet's status as its controller would).
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut objs = self.objects.lock().unwrap();
        let o = objs.get_mut(path).expect("object to edit");
        f(o);
        o["metadata"]["resourceVersion"] = json!(self.next_rv());
    }

    /// Every stored path starting with `prefix`.
    pub fn paths(&self, prefix: &str) -> Vec<String> {
        self.objects
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// resourceVersion of every object except Events (for idempotency checks).
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.objects
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| !k.contains("/events/"))
            .map(|(k, v)| {
                (
                    k.clone(),
                    v["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect()
    }

    /// Reasons of the Events stored.
    pub fn event_reasons(&self) -> Vec<String> {
        self.objects
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.contains("/events/"))
            .map(|(_, v)| v["reason"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// `(method, path)` requests logged so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().clone()
    }

    /// Marks the object for deletion as the API server does on DELETE.
    pub fn delete(&self, path: &str) {
        let mut objs = self.objects.lock().unwrap();
        let remove = match objs.get_mut(path) {
            Some(o) => {
                let has_fin = o["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                if has_fin {
                    o["metadata"]["deletionTimestamp"] = json!("2026-01-02T00:00:00Z");
                }
                !has_fin
            }
            None => false,
        };
        if remove {
            objs.remove(path);
        }
    }

    fn finish(&self, key: &str, obj: Value) -> Value {
        // An object being deleted goes once its last finalizer does.
        let gone = obj["metadata"]["deletionTimestamp"].is_string()
            && obj["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty());
        let mut objs = self.objects.lock().unwrap();
        if gone {
            objs.remove(key);
        } else {
            objs.insert(key.to_string(), obj.clone());
        }
        obj
    }

    fn store_changed(&self, key: &str, old: Option<&Value>, mut new: Value) -> Value {
        if let Some(old) = old {
            let mut a = old.clone();
            let mut b = new.clone();
            for v in [&mut a, &mut b] {
                v["metadata"]
                    .as_object_mut()
                    .map(|m| m.remove("resourceVersion"));
            }
            if a == b {
                return old.clone();
            }
            if old.get("spec") != new.get("spec") {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                new["metadata"]["generation"] = json!(g + 1);
            }
        }
        new["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.finish(key, new)
    }

    /// Validates `new` (a whole object about to be stored in collection `t`) against its schema.
    fn admit(
        &self,
        method: &Method,
        path: &str,
        t: &Target,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), (u16, Value)> {
        let Some(schema) = super::schema::for_collection(&t.collection_all) else {
            if t.collection_all.starts_with("/apis/monitoring.coreos.com/") {
                return Ok(());
            }
            return Err(status(
                500,
                "InternalError",
                &format!(
                    "fake: no schema for {} (add it to schema::for_collection)",
                    t.collection_all
                ),
            ));
        };
        let problems = schema.validate(new, old);
        if problems.is_empty() {
            return Ok(());
        }
        self.rejected.lock().unwrap().push((
            method.to_string(),
            path.to_string(),
            problems.clone(),
        ));
        let undeclared = problems.iter().any(|p| p.contains("field not declared"));
        let msg = problems.join("; ");
        Err(if undeclared {
            status(
                500,
                "InternalError",
                &format!("failed to create typed patch object: {msg}"),
            )
        } else {
            status(422, "Invalid", &msg)
        })
    }

    /// Writes refused by validation so far.
    pub fn rejected(&self) -> Vec<Rejected> {
        self.rejected.lock().unwrap().clone()
    }

    async fn handle(&self, req: Request<Body>) -> (u16, Value) {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let ctype = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.log
            .lock()
            .unwrap()
            .push((method.to_string(), path.clone()));
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        let Some(t) = parse(&path) else {
            return status(404, "NotFound", "no such API (fake)");
        };
        let key = t.name.as_ref().map(|n| format!("{}/{n}", t.collection));
        let existing = key.as_ref().and_then(|k| self.get(k));
        match (method.clone(), &t.name) {
            (Method::GET, None) => {
                let selector = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("labelSelector="))
                    .map(|s| {
                        s.replace("%3D", "=")
                            .replace("%2C", ",")
                            .replace("%2F", "/")
                    });
                let objs = self.objects.lock().unwrap();
                let items: Vec<Value> = objs
                    .iter()
                    .filter(|(k, _)| {
                        let coll = &k[..k.rfind('/').unwrap()];
                        coll == t.collection
                            || (t.collection == t.collection_all
                                && strip_ns(coll) == t.collection_all)
                    })
                    .map(|(_, v)| v.clone())
                    .filter(|v| match &selector {
                        None => true,
                        Some(sel) => sel.split(',').all(|kv| {
                            let (k, val) = kv.split_once('=').unwrap();
                            v["metadata"]["labels"][k] == json!(val)
                        }),
                    })
                    .collect();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            (Method::GET, Some(_)) => match existing {
                Some(o) => (200, o),
                None => status(404, "NotFound", "not found"),
            },
            (Method::POST, None) => {
                let mut obj = body;
                let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                let key = format!("{}/{name}", t.collection);
                if self.get(&key).is_some() {
                    return status(409, "AlreadyExists", "already exists");
                }
                if let Some(ns) = t
                    .collection
                    .split("/namespaces/")
                    .nth(1)
                    .and_then(|s| s.split('/').next())
                {
                    obj["metadata"]["namespace"] = json!(ns);
                }
                self.stamp_new(&mut obj);
                if let Err(e) = self.admit(&method, &path, &t, &obj, None) {
                    return e;
                }
                self.objects.lock().unwrap().insert(key, obj.clone());
                (201, obj)
            }
            (Method::PUT, Some(_)) => {
                let Some(old) = existing else {
                    return status(404, "NotFound", "not found");
                };
                if body["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
                    return status(409, "Conflict", "the object has been modified");
                }
                if let Err(e) = self.admit(&method, &path, &t, &body, Some(&old)) {
                    return e;
                }
                (
                    200,
                    self.store_changed(key.as_ref().unwrap(), Some(&old), body),
                )
            }
            (Method::DELETE, Some(_)) => {
                let Some(o) = existing else {
                    return status(404, "NotFound", "not found");
                };
                self.delete(key.as_ref().unwrap());
                (200, self.get(key.as_ref().unwrap()).unwrap_or(o))
            }
            (Method::PATCH, Some(name)) => {
                let key = key.clone().unwrap();
                if ctype.starts_with("application/apply-patch") {
                    let mut patch = body;
                    if let Some(m) = patch["metadata"].as_object_mut() {
                        m.remove("managedFields");
                    }
                    match existing {
                        None if t.status => status(404, "NotFound", "not found"),
                        None => {
                            let mut obj = patch;
                            obj["metadata"]["name"] = json!(name);
                            if let Some(ns) = t
                                .collection
                                .split("/namespaces/")
                                .nth(1)
                                .and_then(|s| s.split('/').next())
                            {
                                obj["metadata"]["namespace"] = json!(ns);
                            }
                            self.stamp_new(&mut obj);
                            if let Err(e) = self.admit(&method, &path, &t, &obj, None) {
                                return e;
                            }
                            self.objects
                                .lock()
                                .unwrap()
                                .insert(key.clone(), obj.clone());
                            (201, obj)
                        }
                        Some(old) => {
                            let mut new = old.clone();
                            if t.status {
                                new["status"] = patch["status"].clone();
                            } else {
                                if let Some(m) = patch.as_object_mut() {
                                    m.remove("status");
                                }
                                deep_merge(&mut new, &patch);
                            }
                            if let Err(e) = self.admit(&method, &path, &t, &new, Some(&old)) {
                                return e;
                            }
                            (200, self.store_changed(&key, Some(&old), new))
                        }
                    }
                } else {
                    let Some(old) = existing else {
                        return status(404, "NotFound", "not found");
                    };
                    let mut new = old.clone();
                    if ctype.starts_with("application/json-patch") {
                        let p: json_patch::Patch = serde_json::from_value(body).unwrap();
                        // The API server treats an absent list as null in `test` operations.
                        let absent = new["metadata"].get("finalizers").is_none();
                        if absent {
                            new["metadata"]["finalizers"] = Value::Null;
                        }
                        if let Err(e) = json_patch::patch(&mut new, &p) {
                            return status(422, "Invalid", &e.to_string());
                        }
                        if new["metadata"]["finalizers"].is_null() {
                            new["metadata"]
                                .as_object_mut()
                                .unwrap()
                                .remove("finalizers");
                        }
                    } else {
                        // A resourceVersion in a merge patch is a precondition.
                        let rv = &body["metadata"]["resourceVersion"];
                        if rv.is_string() && *rv != old["metadata"]["resourceVersion"] {
                            return status(409, "Conflict", "the object has been modified");
                        }
                        json_patch::merge(&mut new, &body);
                    }
                    if let Err(e) = self.admit(&method, &path, &t, &new, Some(&old)) {
                        return e;
                    }
                    (200, self.store_changed(&key, Some(&old), new))
                }
            }
            _ => status(405, "MethodNotAllowed", "not supported by the fake"),
        }
    }
}
