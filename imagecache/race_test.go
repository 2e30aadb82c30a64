//go:build race

package imagecache_test

const raceEnabled = true
