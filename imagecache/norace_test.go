//go:build !race

package imagecache_test

const raceEnabled = false
