module kubeops.local/testbed/images

go 1.22
