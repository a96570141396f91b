// An object of objects, one of them an array: every shape is flattened.
local app = import 'lib/app.libsonnet';
function(replicas=1) {
  web: app.deployment('web', replicas),
  svc: [app.service('web')],
  config: {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'env' },
    data: { environment: std.extVar('environment') },
  },
}
