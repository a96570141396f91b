// Package health decides whether applied objects are healthy, with kstatus
// (sigs.k8s.io/cli-utils/pkg/kstatus) read strictly: Unknown is not healthy,
// an object is not Current until status.observedGeneration matches its
// generation, and a Job is healthy only once it has completed.
//
// Wait polls the objects until every one is Current, one has Failed for good
// (such as a Deployment past its progress deadline), or the deadline passes,
// and names each unhealthy object with kstatus's reason.
package health
